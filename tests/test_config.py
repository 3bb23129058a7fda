"""Configuration: the shipped file loads, bad files fail naming file, key and reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ml_monitoring_service.config import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_SHARED_DATA_DIR,
    EnvironmentSettings,
    load_config,
)
from ml_monitoring_service.errors import ConfigError
from ml_monitoring_service.metric_roles import MetricRoles

MINIMAL = """
service_sets:
  shop:
    source: demo
    services: [a, b]
    relationships: {a: [b]}
    metrics: {cpu: 'rate(cpu{service="$service"}[1m])'}
"""


FILE_SECTION = """    source: file
    file:
      format: pod_recording
      training_path: ${SHARED_DATA_DIR}/day
      inference_path: $RECORDINGS/day
      training_range: RANGE"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sets.yaml"
    path.write_text(text)
    return path


def test_shipped_config_is_valid() -> None:
    config = load_config(DEFAULT_CONFIG_PATH)
    demo = config.service_set("demo")
    assert demo.name == "demo"
    assert ("checkout", "payment") in demo.edges
    assert demo.schedule.inference_interval == pd.Timedelta("5min")


def test_defaults_fill_missing_sections(tmp_path: Path) -> None:
    shop = load_config(write(tmp_path, MINIMAL)).service_set("shop")
    assert shop.preprocessing.window_size == 32
    assert shop.detection.threshold_percentile == 99.0
    assert shop.preprocessing.count_horizon is None  # fitted to the training data
    assert shop.client_metrics == ()
    assert shop.metric_roles == MetricRoles()


def test_metric_roles_come_from_the_set(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "    source: demo",
        "    source: demo\n    client_metrics: [cpu]\n    traffic_metrics: [cpu]",
    )
    shop = load_config(write(tmp_path, text)).service_set("shop")
    assert shop.metric_roles == MetricRoles(client=("cpu",), traffic=("cpu",))


@pytest.mark.parametrize(("value", "expected"), [("auto", None), ("90s", pd.Timedelta("90s"))])
def test_count_horizon_is_auto_or_a_duration(
    tmp_path: Path, value: str, expected: pd.Timedelta | None
) -> None:
    text = MINIMAL.replace(
        "    source: demo", f"    source: demo\n    preprocessing: {{count_horizon: {value}}}"
    )
    assert load_config(write(tmp_path, text)).service_set("shop").preprocessing.count_horizon == (
        expected
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("    source: demo", "    source: kafka"), "service_sets.shop.source"),
        (("{a: [b]}", "{a: [c]}"), "not in 'services'"),
        (("    source: demo", "    source: demo\n    windw_size: 3"), "windw_size"),
        (
            ("    source: demo", "    source: demo\n    schedule: {training_interval: soon}"),
            "not a duration",
        ),
        (
            ("    source: demo", "    source: demo\n    preprocessing: {variants: [hourly]}"),
            "unknown variant",
        ),
        (
            ("    source: demo", "    source: demo\n    preprocessing: {count_horizon: soon}"),
            "not a duration",
        ),
        (("[a, b]", "[a, a]"), "duplicate services"),
        (
            ("    source: demo", "    source: demo\n    client_metrics: [latency]"),
            "client_metrics names metrics not in 'metrics': ['latency']",
        ),
        (
            ("    source: demo", "    source: demo\n    traffic_metrics: [qps, cpu]"),
            "traffic_metrics names metrics not in 'metrics': ['qps']",
        ),
        (("    source: demo", "    source: file"), "needs a 'file' section"),
        (("    source: demo", "    source: splunk+prometheus"), "log_query' containing $service"),
        (
            ("    source: demo", "    source: demo\n    collect: {prometheus_mode: sometimes}"),
            "collect.prometheus_mode",
        ),
        (
            ("    source: demo", FILE_SECTION.replace("RANGE", "[2024-01-02, 2024-01-01]")),
            "is not before end",
        ),
        (
            ("    source: demo", FILE_SECTION.replace("RANGE", "[2024-01-01]")),
            "expected [start, end]",
        ),
    ],
)
def test_bad_config_names_file_key_and_reason(
    tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    path = write(tmp_path, MINIMAL.replace(*edit))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_unreadable_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "service_sets: [unclosed"))


def test_unknown_set_lists_known_sets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown service set 'nope'.*\['shop'\]"):
        load_config(write(tmp_path, MINIMAL)).service_set("nope")


def test_environment_overrides_dotenv_and_hides_secrets(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("SPLUNK_TOKEN=from-dotenv-secret\nPROMETHEUS_URL=http://127.0.0.1:9090\n")
    env = EnvironmentSettings.from_environment({"SPLUNK_TOKEN": "real-secret"}, dotenv_path=dotenv)
    assert env.splunk_token is not None
    assert env.splunk_token.get_secret_value() == "real-secret"
    assert env.prometheus_url == "http://127.0.0.1:9090"
    assert "real-secret" not in repr(env) and "real-secret" not in str(env.model_dump())


def test_bad_environment_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="prometheus_url: .*http://"):
        EnvironmentSettings.from_environment(
            {"PROMETHEUS_URL": "localhost:9090"}, dotenv_path=tmp_path / "none"
        )


def test_file_source_paths_expand_variables_and_ranges_are_utc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SHARED_DATA_DIR", raising=False)
    monkeypatch.setenv("RECORDINGS", "/data/recordings")
    text = MINIMAL.replace(
        "    source: demo",
        FILE_SECTION.replace("RANGE", '["2024-01-01 00:00", "2024-01-01T06:00+01:00"]'),
    )
    source = load_config(write(tmp_path, text)).service_set("shop").file
    assert source is not None
    assert source.format == "pod_recording"
    assert source.training_path == DEFAULT_SHARED_DATA_DIR / "day"
    assert source.inference_path == Path("/data/recordings/day")
    assert source.training_range == (
        pd.Timestamp("2024-01-01 00:00", tz="UTC"),
        pd.Timestamp("2024-01-01 05:00", tz="UTC"),
    )
    monkeypatch.setenv("SHARED_DATA_DIR", "/elsewhere")
    moved = load_config(write(tmp_path, text)).service_set("shop").file
    assert moved is not None and moved.training_path == Path("/elsewhere/day")


def test_collector_environment_settings(tmp_path: Path) -> None:
    none = tmp_path / "none"
    defaults = EnvironmentSettings.from_environment({}, dotenv_path=none)
    assert defaults.requests_verify is True and defaults.download is True
    off = EnvironmentSettings.from_environment(
        {"REQUESTS_VERIFY": "false", "DOWNLOAD": "false"}, dotenv_path=none
    )
    assert off.requests_verify is False and off.download is False
    bundle = EnvironmentSettings.from_environment(
        {"REQUESTS_VERIFY": "/etc/ssl/ca.pem"}, dotenv_path=none
    )
    assert bundle.requests_verify == Path("/etc/ssl/ca.pem")
