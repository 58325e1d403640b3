"""Runs on disk: each run is a folder (spec, config, history, models), reloaded at start-up.

Layout of ``<root>/<run id>/``:
    run.json      what was trained, on what data, by whom (an opaque owner token), and how it went
    model.keras   the final model;  best.keras  the weights of the best validation epoch, if any
    data.npz      a user's own images (uint8, compressed), when the run was trained on them and they fit the cap

A run folder is only ever replaced whole (``dcnn_core.training.atomic_dir``): written to a staging folder, the old
one renamed aside, the new one renamed in, then the old one deleted. Folders left by a crash between those
steps (``.stage-<id>-*``, ``.old-<id>-*``) are recovered or swept when the runs are next read (``load_all``).
A user's own images are kept by ``dcnn_core.training.run_images``.
"""

from __future__ import annotations

import json
import os
import re
import shutil  # noqa: F401 -- the crash tests replace runs.shutil.rmtree to kill a save mid-way
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from dcnn_core.data import datasets
from dcnn_core.design.spec import ModelSpec
from dcnn_core.training import atomic_dir, run_images
from dcnn_core.training.config import TrainConfig
from dcnn_core.training.job import ENDED_STATES, Progress, RunDescription, TrainingJob
from dcnn_core.training.run_images import DATA_FILE, MAX_SAVED_DATA_BYTES, MB  # noqa: F401 -- part of this module's API

FORMAT = "dcnn-studio-run"
RUN_FILE = "run.json"
_RUN_ID = re.compile(r"[0-9a-f]{12}")  # secrets.token_hex(6), as dcnn_core.training.job makes them


def is_run_id(text: object) -> bool:
    """Whether ``text`` has the form of a run id (12 lowercase hex digits) — never a path."""
    return isinstance(text, str) and _RUN_ID.fullmatch(text) is not None


def _checked_id(run_id: object) -> str:
    if not is_run_id(run_id):
        raise ValueError(f"Not a run id: {run_id!r}.")
    return run_id  # type: ignore[return-value]


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
    data: dict = field(default_factory=dict)  # input_shape, class_names, and for a user's own images: file, key, title, source, note

    @property
    def has_best_model(self) -> bool:
        return (self.folder / "best.keras").exists()

    @property
    def own_images(self) -> bool:
        """Trained on a user's own images (not a set the app can load again by name)."""
        return self.dataset_ref.get("key") not in datasets.REGISTRY

    @property
    def has_saved_images(self) -> bool:
        return run_images.is_saved(self.folder, self.data)


class RunStore:
    """Saves ended jobs and reads them back: one folder per run under ``root``, replaced whole (``atomic_dir``)."""

    def __init__(self, root: Path | str, max_data_bytes: int = MAX_SAVED_DATA_BYTES):
        self.root = Path(root)
        self.max_data_bytes = max_data_bytes
        self._folders = atomic_dir.AtomicFolders(self.root, _RUN_ID.pattern, marker=RUN_FILE)

    def save(self, job: TrainingJob, progress: Progress | None = None) -> Path:
        """Write ``job`` atomically: a crash at any point leaves the previous run or the new one, never neither.

        ``progress`` is the outcome to record (a job calls this before it shows as ended).
        """
        run_id = _checked_id(job.job_id)
        with self._folders.staging(run_id) as staging:
            _write_run(job, progress or job.snapshot(), staging, self.root / run_id, self.max_data_bytes)
            return self._folders.replace(staging, run_id, move=_move)

    def bytes_used(self, run_ids) -> int:
        """Bytes on disk of the saved runs among ``run_ids`` (those not saved count 0)."""
        total = 0
        for run_id in run_ids:
            folder = self.root / str(run_id)
            if is_run_id(run_id) and folder.is_dir() and not folder.is_symlink():
                total += sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())
        return total

    def total_bytes(self) -> int:
        """Bytes on disk of every saved run in this store, whoever owns it."""
        if not self.root.is_dir():
            return 0
        return self.bytes_used(folder.name for folder in self.root.iterdir())

    def delete(self, run_id: str) -> None:
        """Remove a run folder (renamed aside first, so a crash never leaves half a run that looks whole)."""
        self._folders.remove(_checked_id(run_id), move=_move)

    def recover(self) -> None:
        """Finish what a crash interrupted: an orphaned old run goes back, other leftovers are deleted."""
        self._folders.recover(move=_move)

    def load_all(self) -> list[RunRecord]:
        """Every readable run under the root, oldest first; unreadable folders are skipped.

        Crash leftovers are recovered or swept first (``recover``).
        """
        if not self.root.is_dir():
            return []
        try:
            self.recover()
        except OSError:  # e.g. a read-only runs folder: read what is there
            pass
        records = []
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and not folder.is_symlink() and is_run_id(folder.name):
                try:
                    records.append(self.load(folder))
                except Exception:  # a damaged or foreign folder is skipped; it must never break the app
                    continue
        return sorted(records, key=lambda record: record.created_at)

    def load(self, folder: Path) -> RunRecord:
        """The run saved in ``folder``; ValueError if it is not a whole, ended DCNN Studio run."""
        return read_record(folder)

    def load_images(self, record: RunRecord) -> datasets.Dataset:
        """The user's own images saved with ``record``; ValueError if missing, too large or inconsistent."""
        title = str(record.dataset_ref.get("title", "Your images"))
        return run_images.load(record.folder, record.data, title, self.max_data_bytes)


def _move(source: Path, target: Path) -> None:
    """One rename (a step of replacing a run; tests make it fail to simulate a crash)."""
    atomic_dir.rename(source, target)


# --- run.json: writing and reading --------------------------------------------------------------------


def _write_run(job: TrainingJob, progress: Progress, staging: Path, previous: Path, max_data_bytes: int) -> None:
    """Everything a run folder holds, written into ``staging``: run.json, its models, a user's own images."""
    record = _to_json(job, progress)
    record["data"] = run_images.save(job.dataset, job.dataset_ref, staging, previous, max_data_bytes)
    (staging / RUN_FILE).write_text(json.dumps(record, indent=1, allow_nan=True), encoding="utf-8")
    if job.model is not None:
        job.model.save(staging / "model.keras")
        if job.best_weights is not None:
            _save_best(job, staging / "best.keras")


def _to_json(job: TrainingJob, progress: Progress) -> dict:
    return {
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


def read_record(folder: Path) -> RunRecord:
    """The run saved in ``folder``; ValueError if it is not a whole, ended DCNN Studio run."""
    data = json.loads((folder / RUN_FILE).read_text())
    _check_record(folder, data)
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
        data=data.get("data", {}),
    )


def _check_record(folder: Path, data: object) -> None:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{folder} is not a DCNN Studio run.")
    if not is_run_id(data.get("run_id")) or data["run_id"] != folder.name:  # never a path: save() renames by it
        raise ValueError(f"{folder}: its run id {data.get('run_id')!r} does not match its folder.")
    if not isinstance(data.get("dataset", {}), dict) or not isinstance(data.get("owner", ""), str):
        raise ValueError(f"{folder}: 'dataset' must be an object and 'owner' a string.")
    if not isinstance(data.get("data", {}), dict):
        raise ValueError(f"{folder}: 'data' must be an object.")
    if data.get("status") not in ENDED_STATES:  # a saved run never trains: an active status would never end
        raise ValueError(f"{folder}: a saved run must have ended (status {data.get('status')!r}).")


# --- models and jobs ---------------------------------------------------------------------------------


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
    return _ended_job(record, dataset, load_model(record))


def restore_summary(record: RunRecord, reason: str = "") -> TrainingJob:
    """An ended TrainingJob with no model and no images: listed, compared and deletable, never evaluated or continued."""
    reason = reason or record.data.get("note") or "Its images were not kept with the run, so it is shown as a summary only."
    return _ended_job(replace(record, message=f"{record.message} {reason}".strip()), summary_dataset(record), None)


def summary_dataset(record: RunRecord) -> datasets.Dataset:
    """An empty stand-in for data that is gone: the right shape and class names, no images."""
    height, width, channels = (int(v) for v in record.data.get("input_shape") or [1, 1, 1])
    empty, labels = np.zeros((0, height, width, channels), np.uint8), np.zeros(0, np.int64)
    names = [str(name) for name in record.data.get("class_names", [])]
    title = str(record.data.get("title") or record.dataset_ref.get("title") or "Your images")
    return datasets.make_dataset("custom", title, "Images not kept", empty, labels, empty, labels, names, False)


def _ended_job(record: RunRecord, dataset, model) -> TrainingJob:
    description = RunDescription(record.spec, record.config, record.dataset_ref, owner=record.owner, run_id=record.run_id,
                                 strategy=record.strategy, created_at=record.created_at)  # fmt: skip
    test = (record.test_accuracy, record.test_loss) if record.test_accuracy is not None else None
    outcome = {"status": record.status, "message": record.message, "history": record.history, "elapsed_s": record.elapsed_s,
               "best_epoch": record.best_epoch, "test": test}  # fmt: skip
    return TrainingJob.restored(description, dataset, model, outcome)


__all__ = [
    "RunRecord", "RunStore", "ENDED_STATES", "default_runs_dir", "is_run_id", "load_model", "read_record", "restore_job", "restore_summary",
    "summary_dataset",
]  # fmt: skip
