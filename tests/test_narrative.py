"""LLM narrative: what leaves the process, and every way the endpoint can fail.

The tests talk to a stand-in chat-completions server on loopback (``standins/llm_server.py``) with
the real ``requests`` client, and assert on the requests it recorded.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from ml_monitoring_service.config import (
    DEFAULT_CONFIG_PATH,
    EnvironmentSettings,
    NarrativeConfig,
    load_config,
)
from ml_monitoring_service.errors import ConfigError
from ml_monitoring_service.explain.llm_payload import Masker, incident_payload
from ml_monitoring_service.explain.narrative import Narrative, narrate, parse_answer
from standins.llm_server import StandInLLM, running_llm
from standins.processes import free_port

KEY = "sk-test-0123456789"
# Values that must never leave the process, planted where a careless payload would pick them up.
SECRETS = (
    "10.20.30.40",
    "alice@example.org",
    "6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b",
    "4bf92f3577b34da6a3ce929d0e0e4736",
    "token=abc",
    "4111111111111111",
    "RAW LOG LINE",
    "card 5500",
    "ACC-99887766",
    "fe80::1ff:fe23:4567:890a",
    "plots/secret_timeline.png",
    "call the on-call of bob",
)

TEMPLATE = (
    "Timeout calling 10.20.30.40:8443 for alice@example.org after 4111111111111111 ms, 1500 ms "
    "trace 4bf92f3577b34da6a3ce929d0e0e4736 req 6f1c2a9e-3b4d-4e5f-8a9b-0c1d2e3f4a5b "
    "via https://pay.internal/cb?token=abc peer fe80::1ff:fe23:4567:890a account ACC-99887766"
)


def incident() -> dict[str, Any]:
    """An incident report as in contract C, with sensitive values in allowed and banned places."""
    return {
        "schema_version": 1,
        "id": "demo-grid_30s-20240101T100000Z",
        "set": "demo",
        "variant": "grid:30s",
        "model_version": "20240101T000000Z",
        "headline": "payment latency up since 10:00, card 5500",
        "start": "2024-01-01T10:00:00+00:00",
        "end": "2024-01-01T10:20:00+00:00",
        "peak_time": "2024-01-01T10:05:00+00:00",
        "peak_score": 3.2,
        "threshold": 1.4,
        "windows": 12,
        "candidates": [
            {
                "rank": 1,
                "service": "payment",
                "metric": "latency",
                "confidence": 0.6,
                "onset": "2024-01-01T10:01:00+00:00",
                "explained_by": None,
                "evidence": "RAW LOG LINE quoted by a careless formatter",
                "metric_deviations": [
                    {
                        "metric": "latency",
                        "score": 5.1,
                        "baseline_median": 120.0,
                        "period_value": 480.0,
                        "direction": "up",
                    }
                ],
                "call_path": ["frontend", "checkout", "payment"],
                "secret_note": "alice@example.org",
            },
            {"rank": 2, "service": "checkout", "metric": "error_count", "confidence": 0.3},
        ],
        "logs": {
            "services": {
                "payment": {
                    "baseline_events": 40,
                    "period_events": 90,
                    "templates": [
                        {
                            "template": TEMPLATE,
                            "baseline_count": 0,
                            "period_count": 12,
                            "baseline_problems": 0,
                            "period_problems": 12,
                            "new": True,
                            "example": "RAW LOG LINE Timeout calling 10.20.30.40",
                        }
                    ],
                    "exceptions": [
                        {
                            "fingerprint": "a1b2c3d4",
                            "type": "java.net.SocketTimeoutException",
                            "frames": ["com.shop.payment.Client.call(Client.java:42)"],
                            "baseline_count": 0,
                            "period_count": 7,
                            "new": True,
                            "example": "RAW LOG LINE java.net.SocketTimeoutException",
                        }
                    ],
                    "missing_templates": [
                        {
                            "template": "INFO c.s.PaymentImpl#88 charged account 4711",
                            "baseline_count": 180,
                            "period_count": 0,
                            "expected_count": 15.4,
                            "example": "RAW LOG LINE charged account 4711",
                        }
                    ],
                    "missing_lines": 15.4,
                }
            }
        },
        "plots": {"timeline": "plots/secret_timeline.png"},
        "suggested_checks": ["call the on-call of bob"],
        "narrative": None,
        "raw_lines": ["RAW LOG LINE 1", "RAW LOG LINE 2"],
    }


def settings(url: str, **overrides: Any) -> NarrativeConfig:
    values: dict[str, Any] = {
        "enabled": True,
        "url": url,
        "model": "stand-in",
        "timeout_s": 2.0,
        "mask_patterns": [r"ACC-\d{8}"],
    }
    return NarrativeConfig(**{**values, **overrides})


@pytest.fixture
def llm() -> Iterator[StandInLLM]:
    with running_llm(api_key=KEY) as server:
        yield server


def test_valid_answer_becomes_a_narrative_derived_from_the_request(llm: StandInLLM) -> None:
    narrative = narrate(incident(), settings(llm.url), SecretStr(KEY))
    assert isinstance(narrative, Narrative)
    assert narrative.likely_root_cause.startswith("payment ")
    assert narrative.confidence == 0.6
    assert narrative.model_dump()["suggested_fixes"] == ["check recent deployments of payment"]
    (request,) = llm.received()
    assert request.path == "/v1/chat/completions"
    assert request.authorization == f"Bearer {KEY}"
    assert request.body["model"] == "stand-in"
    assert request.body["response_format"] == {"type": "json_object"}
    assert request.body["temperature"] == 0.0
    system = request.body["messages"][0]["content"]
    assert "ONLY" in system and '"likely_root_cause"' in system


def test_fenced_answer_is_accepted(llm: StandInLLM) -> None:
    llm.behaviour = "fenced"
    assert narrate(incident(), settings(llm.url), SecretStr(KEY)) is not None


def test_request_carries_metadata_but_no_example_raw_line_or_identifier(
    llm: StandInLLM,
) -> None:
    narrate(incident(), settings(llm.url), SecretStr(KEY))
    (request,) = llm.received()
    sent = json.dumps(request.body)
    for secret in SECRETS:
        assert secret not in sent, secret
    assert '"example"' not in sent and "a1b2c3d4" not in sent
    user = request.body["messages"][1]["content"]
    payload = json.loads(user.split("\n", 1)[1])
    candidate = payload["candidates"][0]
    assert candidate["service"] == "payment" and candidate["metric"] == "latency"
    assert candidate["call_path"] == ["frontend", "checkout", "payment"]
    assert candidate["metric_deviations"][0]["period_value"] == 480.0
    assert payload["start"] == "2024-01-01T10:00:00+00:00"
    assert payload["id"] == "demo-grid_30s-20240101T100000Z"
    logs = payload["logs"]["services"]["payment"]
    assert logs["templates"][0]["template"] == (
        "Timeout calling <IP> for <EMAIL> after <HEX> ms, <NUM> ms trace <HEX> req <UUID> "
        "via <URL> peer <IP> account <MASKED>"
    )
    assert logs["templates"][0]["period_count"] == 12
    assert logs["exceptions"][0] == {
        "type": "java.net.SocketTimeoutException",
        "frames": ["com.shop.payment.Client.call(Client.java:<NUM>)"],
        "baseline_count": 0,
        "period_count": 7,
        "new": True,
    }
    assert logs["missing_templates"] == [
        {
            "template": "INFO c.s.PaymentImpl#<NUM> charged account <NUM>",
            "baseline_count": 180,
            "period_count": 0,
            "expected_count": 15.4,
        }
    ]
    assert "missing_lines" not in logs


def test_payload_drops_values_of_the_wrong_type() -> None:
    odd = {"id": 7, "peak_score": "3.2", "windows": True, "threshold": float("nan"), "logs": None}
    assert incident_payload(odd, Masker()) == {}


def test_names_keep_digits_and_text_loses_them() -> None:
    masker = Masker()
    assert masker.name("node-2 at 2024-01-01T10:00:00Z") == "node-2 at 2024-01-01T10:00:00Z"
    assert masker.text("Ec2Client retried 3 times, log4j") == "Ec2Client retried <NUM> times, log4j"
    assert masker.name("::1 and 192.168.0.1:80") == "<IP> and <IP>"


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ("invalid_json", "answer is not JSON"),
        ("schema_violation", "answer does not match the schema"),
        ("error", "500 Server Error"),
    ],
)
def test_bad_answers_give_none_and_a_warning(
    llm: StandInLLM, caplog: pytest.LogCaptureFixture, behaviour: Any, reason: str
) -> None:
    llm.behaviour = behaviour
    with caplog.at_level(logging.WARNING):
        assert narrate(incident(), settings(llm.url), SecretStr(KEY)) is None
    (record,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert f"POST {llm.url}/chat/completions" in record.getMessage()
    assert reason in record.getMessage()
    assert len(llm.received()) == (2 if behaviour == "error" else 1)  # one retry, only on 5xx


def test_wrong_key_gives_none_without_retry_or_leaking_the_key(
    llm: StandInLLM, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        assert narrate(incident(), settings(llm.url), SecretStr("sk-wrong-key")) is None
    assert "401" in caplog.text
    assert "sk-wrong-key" not in caplog.text
    assert len(llm.received()) == 1


def test_slow_server_is_abandoned_at_the_timeout(
    llm: StandInLLM, caplog: pytest.LogCaptureFixture
) -> None:
    llm.behaviour = "slow"
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        assert narrate(incident(), settings(llm.url, timeout_s=0.5), SecretStr(KEY)) is None
    assert time.monotonic() - started < 2.0
    assert "ReadTimeout" in caplog.text
    assert len(llm.received()) == 1  # a timeout is not retried


def test_refused_connection_is_retried_once_then_none(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    with caplog.at_level(logging.INFO):
        assert narrate(incident(), settings(url)) is None
    assert time.monotonic() - started < 3.0
    assert "try 1 of 2" in caplog.text and "ConnectionError" in caplog.text


def test_disabled_sends_nothing(llm: StandInLLM) -> None:
    off = settings(llm.url, enabled=False)
    assert narrate(incident(), off, SecretStr(KEY)) is None
    assert llm.received() == []


def test_parse_answer_rejects_extra_keys_and_out_of_range_confidence() -> None:
    def completion(answer: dict[str, Any]) -> dict[str, Any]:
        return {"choices": [{"message": {"content": json.dumps(answer)}}]}

    good = {
        "likely_root_cause": "x",
        "evidence": [],
        "confidence": 0.5,
        "suggested_fixes": [],
    }
    assert parse_answer(completion(good)).confidence == 0.5
    for bad in ({**good, "extra": 1}, {**good, "confidence": 1.5}):
        with pytest.raises(Exception, match="does not match the schema"):
            parse_answer(completion(bad))


NARRATIVE_SET = """
service_sets:
  shop:
    source: demo
    services: [a, b]
    metrics: {cpu: 'rate(cpu{service="$service"}[1m])'}
    narrative:
BODY
"""


def load_narrative(tmp_path: Path, body: str) -> NarrativeConfig:
    path = tmp_path / "sets.yaml"
    path.write_text(NARRATIVE_SET.replace("BODY", body))
    return load_config(path).service_set("shop").narrative


def test_config_defaults_to_off_and_loads_a_complete_section(tmp_path: Path) -> None:
    config = load_narrative(tmp_path, "      enabled: false")
    assert not config.enabled and config.timeout_s == 30.0 and config.temperature == 0.0
    loaded = load_narrative(
        tmp_path,
        "      enabled: true\n      url: http://127.0.0.1:11434/v1/\n      model: small\n"
        "      mask_patterns: ['ACC-\\d+']",
    )
    assert loaded.url == "http://127.0.0.1:11434/v1"
    assert loaded.mask_patterns == ("ACC-\\d+",)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("      enabled: true\n      model: m", "enabled: true needs url"),
        ("      enabled: true", "enabled: true needs url and model"),
        ("      url: ftp://host/v1", "narrative.url: Value error, must start with http"),
        ("      url: http://u:p@host/v1", "must not contain credentials"),
        ("      mask_patterns: ['ok', 'acc-(']", "mask pattern 'acc-(' is not a valid regex"),
        ("      timeout_s: 0", "narrative.timeout_s"),
        ("      temprature: 0.5", "narrative.temprature: Extra inputs are not permitted"),
    ],
)
def test_config_errors_name_the_key_and_reason(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match="service_sets.shop.narrative") as error:
        load_narrative(tmp_path, body)
    assert message in str(error.value)


def test_api_key_comes_from_the_environment_and_is_never_printed() -> None:
    env = EnvironmentSettings.from_environment(
        {"LLM_API_KEY": KEY}, dotenv_path=Path("/nonexistent")
    )
    assert env.llm_api_key is not None and env.llm_api_key.get_secret_value() == KEY
    assert KEY not in repr(env) and KEY not in str(env)


def test_shipped_commented_example_is_valid() -> None:
    """The commented ``narrative`` example in the shipped file loads once uncommented."""
    lines = DEFAULT_CONFIG_PATH.read_text(encoding="utf-8").splitlines()
    start = lines.index("    # narrative:")
    block = [line[6:] for line in lines[start + 1 :] if line.startswith("    #   ")]
    example = NarrativeConfig(**yaml.safe_load("\n".join(block)))
    assert not example.enabled and example.url == "http://127.0.0.1:11434/v1"
    assert example.mask_patterns == (r"ACC-\d{8}",)
