"""The one place that decides where tensors live."""

from __future__ import annotations

import torch

from ml_monitoring_service.errors import ConfigError


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA when a GPU is visible, else CPU; ``cuda`` without a GPU is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device 'cuda' was requested but no CUDA GPU is available; use 'auto' or 'cpu'"
        )
    if requested not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {requested!r}; use 'auto', 'cpu' or 'cuda'")
    return torch.device(requested)
