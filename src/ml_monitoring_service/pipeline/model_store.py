"""Where models live: ``<output>/<set>/models/<variant>/<version>/`` and a ``CURRENT`` pointer.

A new model is written to a hidden temporary directory and renamed into place, then ``CURRENT`` is
replaced atomically (``os.replace``). A crash mid-save therefore never leaves a half-written model
visible, and the previous model keeps serving until the new one is complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from ml_monitoring_service.detectors.base import WindowDetector
from ml_monitoring_service.errors import ModelMismatchError

_POINTER = "CURRENT"


def model_root(output_dir: Path, set_name: str, variant_name: str) -> Path:
    """Directory holding every version of one set's model for one preprocessing variant."""
    return output_dir / set_name / "models" / variant_name


def save_new_version(detector: WindowDetector, root: Path) -> Path:
    """Save ``detector`` as a new version and make it current; returns the version directory."""
    root.mkdir(parents=True, exist_ok=True)
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        detector.save(staging)
        final = root / version
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    pointer_tmp = root / f".{_POINTER}.tmp"
    pointer_tmp.write_text(version, encoding="utf-8")
    os.replace(pointer_tmp, root / _POINTER)
    return final


def current_version(root: Path) -> Path | None:
    """The current version directory, or ``None`` when no model has been trained yet."""
    pointer = root / _POINTER
    if not pointer.exists():
        return None
    version = root / pointer.read_text(encoding="utf-8").strip()
    if not version.is_dir():
        raise ModelMismatchError(f"{pointer} points to {version.name}, which does not exist")
    return version


def load_current(root: Path) -> tuple[WindowDetector, str] | None:
    """Load the current model and its version name, or ``None`` when there is none."""
    version = current_version(root)
    if version is None:
        return None
    return WindowDetector.load(version), version.name
