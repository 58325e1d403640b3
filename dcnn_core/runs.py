"""Runs on disk: each run is a folder (spec, config, history, models), reloaded at start-up.

Layout of ``<root>/<run id>/``:
    run.json      what was trained, on what data, by whom (an opaque owner token), and how it went
    model.keras   the final model;  best.keras  the weights of the best validation epoch, if any
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from dcnn_core.spec import ModelSpec
from dcnn_core.training import ENDED_STATES, Progress, TrainingJob
from dcnn_core.training_config import TrainConfig

FORMAT = "dcnn-studio-run"
_RUN_ID = re.compile(r"^[0-9a-f]{6,32}$")


def default_runs_dir() -> Path:
    """``DCNN_RUNS_DIR``, or ``runs/`` in the working folder."""
    return Path(os.environ.get("DCNN_RUNS_DIR", "runs")).resolve()


@dataclass(frozen=True)
class RunRecord:
    """A saved run as read from disk (models are loaded only when asked)."""

    run_id: str
    folder: Path
    owner: str
    spec: ModelSpec
    config: TrainConfig
    dataset_ref: dict
    status: str
    message: str
    history: dict[str, list[float]]
    created_at: float
    elapsed_s: float
    test_accuracy: float | None
    test_loss: float | None
    best_epoch: int | None
    parameters: int
    strategy: str = "default"  # the tf.distribute strategy it was trained under, in words ("default" for app runs)

    @property
    def has_best_model(self) -> bool:
        return (self.folder / "best.keras").exists()


class RunStore:
    """Saves ended jobs and reads them back."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def save(self, job: TrainingJob, progress: Progress | None = None) -> Path:
        """Write ``job`` atomically (to a temp folder, then rename) — a crash never leaves half a run.

        ``progress`` is the outcome to record (a job calls this before it shows as ended).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        progress = progress or job.snapshot()
        record = {
            "format": FORMAT,
            "version": 1,
            "run_id": job.job_id,
            "owner": job.owner,
            "spec": job.spec.to_dict(),
            "config": job.config.to_dict(),
            "dataset": job.dataset_ref,
            "status": progress.status,
            "message": progress.message,
            "history": progress.history,
            "created_at": job.created_at,
            "saved_at": time.time(),
            "elapsed_s": progress.elapsed_s,
            "test_accuracy": progress.test_accuracy,
            "test_loss": progress.test_loss,
            "best_epoch": progress.best_epoch,
            "parameters": int(job.model.count_params()) if job.model is not None else 0,
            "strategy": job.strategy,
        }
        staging = Path(tempfile.mkdtemp(prefix=f".{job.job_id}-", dir=self.root))
        try:
            (staging / "run.json").write_text(json.dumps(record, indent=1, allow_nan=True))
            if job.model is not None:
                job.model.save(staging / "model.keras")
                if job.best_weights is not None:
                    _save_best(job, staging / "best.keras")
            final = self.root / job.job_id
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)
            return final
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def load_all(self) -> list[RunRecord]:
        """Every readable run under the root, oldest first; unreadable folders are skipped."""
        if not self.root.is_dir():
            return []
        records = []
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and _RUN_ID.match(folder.name):
                try:
                    records.append(self.load(folder))
                except Exception:  # a damaged or foreign folder is skipped; it must never break the app
                    continue
        return sorted(records, key=lambda record: record.created_at)

    def load(self, folder: Path) -> RunRecord:
        data = json.loads((folder / "run.json").read_text())
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{folder} is not a DCNN Studio run.")
        if not isinstance(data.get("dataset", {}), dict) or not isinstance(data.get("owner", ""), str):
            raise ValueError(f"{folder}: 'dataset' must be an object and 'owner' a string.")
        if data.get("status") not in ENDED_STATES:  # a saved run never trains: an active status would never end
            raise ValueError(f"{folder}: a saved run must have ended (status {data.get('status')!r}).")
        return RunRecord(
            run_id=data["run_id"],
            folder=folder,
            owner=data.get("owner", ""),
            spec=ModelSpec.from_dict(data["spec"]),
            config=TrainConfig.from_dict(data["config"]),
            dataset_ref=data.get("dataset", {}),
            status=data["status"],
            message=data.get("message", ""),
            history={key: [float(v) for v in values] for key, values in data.get("history", {}).items()},
            created_at=float(data.get("created_at", 0)),
            elapsed_s=float(data.get("elapsed_s", 0)),
            test_accuracy=data.get("test_accuracy"),
            test_loss=data.get("test_loss"),
            best_epoch=data.get("best_epoch"),
            parameters=int(data.get("parameters", 0)),
            strategy=str(data.get("strategy", "default")),
        )

    def delete(self, run_id: str) -> None:
        if not _RUN_ID.match(run_id):
            raise ValueError("Not a run id.")
        folder = self.root / run_id
        if folder.is_dir():
            shutil.rmtree(folder)


def _save_best(job: TrainingJob, path: Path) -> None:
    from dcnn_core.runtime import import_keras

    keras = import_keras()
    best = keras.models.clone_model(job.model)
    best.set_weights(job.best_weights)
    best.save(path)


def load_model(record: RunRecord, best: bool = False):
    """The run's saved Keras model (safe mode: no arbitrary code from the file)."""
    from dcnn_core.runtime import import_keras

    keras = import_keras()
    path = record.folder / ("best.keras" if best else "model.keras")
    return keras.saving.load_model(path, safe_mode=True)


def restore_job(record: RunRecord, dataset) -> TrainingJob:
    """An ended TrainingJob rebuilt from disk: its model, history and outcome, ready to predict or continue."""
    job = TrainingJob(record.spec, dataset, record.config, owner=record.owner)
    job.job_id = record.run_id
    job.dataset_ref = record.dataset_ref
    job.created_at = record.created_at
    job.strategy = record.strategy
    job.model = load_model(record)
    job._restore(record)
    return job


__all__ = ["RunRecord", "RunStore", "ENDED_STATES", "default_runs_dir", "load_model", "restore_job"]
