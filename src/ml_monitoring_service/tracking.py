"""MLflow tracking of training and inference runs.

Tracking is an audit trail, not part of the product's critical path: if the tracking store is
unavailable the run still completes and a warning says what was not recorded. Models are logged as
plain artifact directories (the same directory the daemon loads), which avoids MLflow's
requirement inference (~15 s per model) and keeps one source of truth for the model format.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class RunTracker:
    """Records runs in the MLflow store at ``tracking_uri`` (a sqlite file by default)."""

    def __init__(self, tracking_uri: str, enabled: bool = True) -> None:
        self.tracking_uri = tracking_uri
        self.enabled = enabled

    @contextmanager
    def _run(self, experiment: str, run_name: str) -> Iterator[Any]:
        import mlflow  # imported lazily: it takes seconds and is not needed for scoring

        artifact_root = _sqlite_artifact_root(self.tracking_uri)
        mlflow.set_tracking_uri(self.tracking_uri)
        if mlflow.get_experiment_by_name(experiment) is None:
            mlflow.create_experiment(experiment, artifact_location=artifact_root)
        mlflow.set_experiment(experiment)
        with mlflow.start_run(run_name=run_name):
            yield mlflow

    def log_training(
        self,
        set_name: str,
        variant_label: str,
        params: dict[str, Any],
        epoch_losses: list[tuple[float, float]],
        summary: dict[str, Any],
        model_dir: Path,
    ) -> None:
        """Parameters, per-epoch train/validation losses, threshold and the model directory."""
        if not self.enabled:
            return
        try:
            with self._run(f"ml-monitoring/{set_name}", f"train {variant_label}") as mlflow:
                mlflow.log_params({**params, "variant": variant_label})
                for epoch, (train_loss, val_loss) in enumerate(epoch_losses, start=1):
                    mlflow.log_metrics({"train_loss": train_loss, "val_loss": val_loss}, step=epoch)
                mlflow.log_metrics({k: float(v) for k, v in summary.items()})
                mlflow.log_artifacts(str(model_dir), artifact_path="model")
        except Exception as exc:  # noqa: BLE001 - tracking must never fail a training run
            logger.warning(
                "MLflow tracking of training failed (%s); the model is saved anyway", exc
            )

    def log_inference(self, summary: dict[str, Any], files: tuple[Path, ...]) -> None:
        """Headline numbers of one scoring run plus its summary and plots."""
        if not self.enabled:
            return
        try:
            run_name = f"inference {summary['variant']}"
            with self._run(f"ml-monitoring/{summary['set']}", run_name) as mlflow:
                mlflow.log_params(
                    {"variant": summary["variant"], "model_version": summary["model_version"]}
                )
                mlflow.log_metrics(
                    {
                        "threshold": summary["threshold"],
                        "windows_scored": summary["windows_scored"],
                        "anomalies": summary["anomalies"],
                        "anomaly_rate": summary["anomaly_rate"],
                        "max_score": summary["max_score"],
                    }
                )
                for path in files:
                    mlflow.log_artifact(str(path))
        except Exception as exc:  # noqa: BLE001 - tracking must never fail an inference run
            logger.warning(
                "MLflow tracking of inference failed (%s); outputs are written anyway", exc
            )


def _sqlite_artifact_root(uri: str) -> str | None:
    """For a sqlite store, keep artifacts in ``artifacts/`` beside the database file.

    Without this MLflow would put them in ``./mlruns`` of whatever directory the daemon was
    started from. Other stores (a tracking server) choose their own artifact location.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    database = Path(uri[len(prefix) :])
    database.parent.mkdir(parents=True, exist_ok=True)
    return (database.parent / "artifacts").resolve().as_uri()
