"""The GPU path: trains and scores on CUDA like on CPU, and a GPU-trained model serves from a
CPU-only host. The CUDA tests skip cleanly where no GPU is visible; the CPU-host ones where one is.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import with_spike
from ml_monitoring_service.detectors import TransformerAutoencoderDetector, WindowDetector
from ml_monitoring_service.detectors.device import resolve_device
from ml_monitoring_service.errors import ConfigError
from ml_monitoring_service.pipeline.model_store import load_latest_good, promote, save_version

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")
cpu_host = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a CPU-only host")
PARAMS = dict(window_size=16, max_epochs=3, d_model=16, n_heads=2, show_progress=False, seed=4)


def test_auto_device_matches_hardware() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")


@cpu_host
def test_cuda_without_gpu_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda")


@needs_gpu
def test_gpu_training_finds_the_same_spike_as_cpu(train_val_test) -> None:
    train, val, test = train_val_test
    spiked = with_spike(test, 150, service=1, feature=1, size=8.0)
    for device in ("cuda", "cpu"):
        detector = TransformerAutoencoderDetector(device=device, **PARAMS).fit(train, val)
        assert next(detector.network_.parameters()).device.type == device
        result = detector.score(spiked)
        assert np.all(np.isfinite(result.window_scores))
        assert result.window_scores.shape == (test.n_steps - 15,)
        touched = (result.starts <= spiked.timestamps[152]) & (
            result.ends >= spiked.timestamps[150]
        )
        assert result.window_scores[touched].max() > result.window_scores[~touched].max(), device


@needs_gpu
def test_a_model_trained_on_the_gpu_scores_the_same_on_the_cpu(
    train_val_test, tmp_path: Path
) -> None:
    train, val, test = train_val_test
    gpu = TransformerAutoencoderDetector(device="cuda", **PARAMS).fit(train, val)
    gpu.save(tmp_path / "model")
    cpu = WindowDetector.load(tmp_path / "model", device="cpu")
    assert next(cpu.network_.parameters()).device.type == "cpu"
    np.testing.assert_allclose(
        cpu.score(test).window_scores, gpu.score(test).window_scores, rtol=1e-3, atol=1e-6
    )


@cpu_host
def test_a_model_saved_for_cuda_loads_on_a_cpu_host_with_this_hosts_device(
    train_val_test, tmp_path: Path
) -> None:
    """A model trained with ``device: cuda`` carries that setting in ``config.json``; the daemon
    on a CPU-only host loads it with its own configured device instead of refusing it."""
    train, val, test = train_val_test
    trained = TransformerAutoencoderDetector(device="cpu", **PARAMS).fit(train, val)
    root = tmp_path / "models"
    version = save_version(trained, root)
    promote(root, version.name)
    config_file = version / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["params"]["device"] = "cuda"  # what a GPU training run writes
    config_file.write_text(json.dumps(config), encoding="utf-8")

    with pytest.raises(ConfigError, match="no CUDA GPU"):
        WindowDetector.load(version)  # the saved setting alone cannot run here
    loaded = load_latest_good(root, device="auto")
    assert loaded is not None and loaded[1] == version.name
    np.testing.assert_allclose(
        loaded[0].score(test).window_scores, trained.score(test).window_scores, rtol=1e-6
    )
