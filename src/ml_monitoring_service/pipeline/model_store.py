"""Where models live: ``<output>/<set>/models/<variant>/<version>/`` and a ``CURRENT`` pointer.

A new model is written to a hidden temporary directory and renamed into place, then ``CURRENT`` is
replaced atomically (``os.replace``). A crash mid-save therefore never leaves a half-written model
visible, and the previous model keeps serving until the new one is complete.

The daemon adds: :func:`save_version` (write without promoting), :func:`promote` (move
``CURRENT``), :func:`prune_versions` (keep the newest K), :func:`save_rejected` (candidates
refused promotion go to ``rejected/``), :func:`load_latest_good` (fall back to the newest
loadable version when the current one is corrupt) and :func:`remove_stale_staging`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from ml_monitoring_service.detectors.base import WindowDetector
from ml_monitoring_service.errors import ModelMismatchError

_POINTER = "CURRENT"
_REJECTED = "rejected"
logger = logging.getLogger(__name__)


def model_root(output_dir: Path, set_name: str, variant_name: str) -> Path:
    """Directory holding every version of one set's model for one preprocessing variant."""
    return output_dir / set_name / "models" / variant_name


def save_new_version(detector: WindowDetector, root: Path) -> Path:
    """Save ``detector`` as a new version and make it current; returns the version directory."""
    final = save_version(detector, root)
    promote(root, final.name)
    return final


def save_version(detector: WindowDetector, root: Path) -> Path:
    """Write ``detector`` to ``root/<new version>`` through staging; ``CURRENT`` is unchanged."""
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
    return final


def promote(root: Path, version: str) -> None:
    """Point ``CURRENT`` at ``version`` atomically (write a temporary file, then ``os.replace``)."""
    pointer_tmp = root / f".{_POINTER}.tmp"
    pointer_tmp.write_text(version, encoding="utf-8")
    os.replace(pointer_tmp, root / _POINTER)


def versions(root: Path) -> list[Path]:
    """Complete version directories, oldest first (names are sortable UTC timestamps)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name[:1].isdigit())


def prune_versions(root: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` versions, never the current one; return the deleted."""
    pointer = root / _POINTER
    current = pointer.read_text(encoding="utf-8").strip() if pointer.exists() else None
    old = [v for v in versions(root)[:-keep] if v.name != current]
    for version in old:
        shutil.rmtree(version, ignore_errors=True)
    return old


def save_rejected(detector: WindowDetector, root: Path, reason: str, keep: int) -> Path:
    """Keep a refused candidate under ``root/rejected/`` with ``reason.json``, newest ``keep``."""
    rejected_root = root / _REJECTED
    final = save_version(detector, rejected_root)
    (final / "reason.json").write_text(json.dumps({"reason": reason}), encoding="utf-8")
    for version in versions(rejected_root)[:-keep]:
        shutil.rmtree(version, ignore_errors=True)
    return final


def remove_stale_staging(root: Path) -> int:
    """Delete staging directories a crash left behind (never visible as models); return count."""
    stale = list(root.glob(".staging-*")) + list(root.glob(f"{_REJECTED}/.staging-*"))
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return len(stale)


def current_version(root: Path) -> Path | None:
    """The current version directory, or ``None`` when no model has been trained yet."""
    pointer = root / _POINTER
    if not pointer.exists():
        return None
    version = root / pointer.read_text(encoding="utf-8").strip()
    if not version.is_dir():
        raise ModelMismatchError(f"{pointer} points to {version.name}, which does not exist")
    return version


def load_current(root: Path, device: str | None = None) -> tuple[WindowDetector, str] | None:
    """Load the current model and its version name, or ``None`` when there is none.

    ``device`` is this host's (see :meth:`WindowDetector.load`).
    """
    version = current_version(root)
    if version is None:
        return None
    return WindowDetector.load(version, device), version.name


def load_latest_good(root: Path, device: str | None = None) -> tuple[WindowDetector, str] | None:
    """The current model, or when it cannot be loaded the newest version that can.

    A corrupt current version is logged and skipped rather than failing the daemon; ``None``
    when no version loads (the daemon then reports not-ready and retrains).
    """
    try:
        loaded = load_current(root, device)
    except (ModelMismatchError, OSError, RuntimeError, ValueError) as exc:
        logger.error("current model in %s cannot be loaded: %s", root, exc)
    else:
        if loaded is not None:
            return loaded
    for version in reversed(versions(root)):
        try:
            detector = WindowDetector.load(version, device)
        except (ModelMismatchError, OSError, RuntimeError, ValueError) as exc:
            logger.error("model version %s cannot be loaded: %s", version, exc)
            continue
        logger.warning("falling back to model version %s in %s", version.name, root)
        return detector, version.name
    return None
