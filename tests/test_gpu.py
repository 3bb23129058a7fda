"""The GPU path: trains and scores on CUDA like on CPU. Skips cleanly where no GPU is visible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ml_monitoring_service.detectors import TransformerAutoencoderDetector
from ml_monitoring_service.detectors.device import resolve_device
from ml_monitoring_service.errors import ConfigError

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")


def test_auto_device_matches_hardware() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        resolve_device("cuda")


@needs_gpu
def test_gpu_training_scores_like_cpu(train_val_test) -> None:
    train, val, test = train_val_test
    params = dict(window_size=16, max_epochs=3, d_model=16, n_heads=2, show_progress=False, seed=4)
    gpu = TransformerAutoencoderDetector(device="cuda", **params).fit(train, val)
    assert next(gpu.network_.parameters()).is_cuda
    scores = gpu.score(test).window_scores
    assert np.all(np.isfinite(scores)) and scores.shape == (test.n_steps - 15,)
