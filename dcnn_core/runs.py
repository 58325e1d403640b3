"""Runs on disk: each run is a folder (spec, config, history, models), reloaded at start-up.

Layout of ``<root>/<run id>/``:
    run.json      what was trained, on what data, by whom (an opaque owner token), and how it went
    model.keras   the final model;  best.keras  the weights of the best validation epoch, if any
    data.npz      a user's own images (uint8, compressed), when the run was trained on them and they fit the cap

A run folder is only ever replaced whole: it is written to a staging folder, the old one is renamed
aside, the new one renamed in, then the old one deleted. Folders left by a crash between those steps
(``.stage-<id>-*``, ``.old-<id>-*``) are recovered or swept when the runs are next read (``load_all``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from dcnn_core import datasets
from dcnn_core.spec import ModelSpec
from dcnn_core.training import ENDED_STATES, Progress, RunDescription, TrainingJob
from dcnn_core.training_config import TrainConfig

FORMAT = "dcnn-studio-run"
DATA_FILE = "data.npz"
MB = 1024 * 1024
MAX_SAVED_DATA_BYTES = 64 * MB  # a user's own images larger than this (uncompressed) are not kept with the run
_RUN_ID = re.compile(r"[0-9a-f]{12}")  # secrets.token_hex(6), as dcnn_core.training makes them
_LEFTOVER = re.compile(r"\.(stage|old)-([0-9a-f]{12})-[0-9a-z_]+")


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
        return self.data.get("file") == DATA_FILE and (self.folder / DATA_FILE).is_file()


class RunStore:
    """Saves ended jobs and reads them back."""

    def __init__(self, root: Path | str, max_data_bytes: int = MAX_SAVED_DATA_BYTES):
        self.root = Path(root)
        self.max_data_bytes = max_data_bytes
        self._lock = threading.Lock()
        self._busy: set[str] = set()  # staging and aside folders a save in this process is using

    # --- writing ------------------------------------------------------------------------------

    def save(self, job: TrainingJob, progress: Progress | None = None) -> Path:
        """Write ``job`` atomically: a crash at any point leaves the previous run or the new one, never neither.

        ``progress`` is the outcome to record (a job calls this before it shows as ended).
        """
        run_id = _checked_id(job.job_id)
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / run_id
        staging = Path(tempfile.mkdtemp(prefix=f".stage-{run_id}-", dir=self.root))
        self._hold(staging)
        try:
            record = _record(job, progress or job.snapshot())
            record["data"] = self._write_images(job, staging, final)
            _write_json(staging / "run.json", record)
            if job.model is not None:
                job.model.save(staging / "model.keras")
                if job.best_weights is not None:
                    _save_best(job, staging / "best.keras")
            _sync_tree(staging)
            self._replace(staging, final)
            return final
        finally:
            self._release(staging)
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def _replace(self, staging: Path, final: Path) -> None:
        """Rename the old run aside, rename the new one in, then delete the old one."""
        aside = self.root / f".old-{final.name}-{secrets.token_hex(4)}"
        self._hold(aside)
        try:
            if final.exists():
                _move(final, aside)
            try:
                _move(staging, final)
            except BaseException:
                if aside.exists() and not final.exists():
                    _move(aside, final)  # put the previous run back
                raise
            _sync_dir(self.root)
            if aside.exists():
                shutil.rmtree(aside, ignore_errors=True)  # a leftover is swept at the next start-up
        finally:
            self._release(aside)

    def _write_images(self, job: TrainingJob, staging: Path, final: Path) -> dict:
        """Keep a user's own images with the run (they live nowhere else), within ``max_data_bytes``."""
        dataset = job.dataset
        info = {"input_shape": list(dataset.input_shape), "class_names": list(dataset.class_names)}
        if job.dataset_ref.get("key") in datasets.REGISTRY:
            return info  # loadable again by name
        info |= {"key": dataset.key, "title": dataset.title, "source": dataset.source, "light_on_dark": dataset.light_on_dark}
        previous = final / DATA_FILE
        if previous.is_file():  # the same run saved again (continued): the same images, already compressed
            _link_or_copy(previous, staging / DATA_FILE)
            return info | {"file": DATA_FILE}
        size = dataset.x_train.nbytes + dataset.x_test.nbytes
        if size > self.max_data_bytes:
            note = (f"Its images ({size / MB:.1f} MB) are more than the {self.max_data_bytes / MB:.1f} MB a run keeps, so they were "
                    "not saved: after a restart it is a summary you can compare and delete, not evaluate or continue.")  # fmt: skip
            return info | {"file": None, "note": note}
        label_type = np.uint8 if dataset.num_classes <= 256 else np.uint16
        np.savez_compressed(
            staging / DATA_FILE,
            x_train=dataset.x_train.astype(np.uint8, copy=False), y_train=dataset.y_train.astype(label_type),
            x_test=dataset.x_test.astype(np.uint8, copy=False), y_test=dataset.y_test.astype(label_type),
            class_names=np.array(dataset.class_names, dtype=str),
        )  # fmt: skip
        return info | {"file": DATA_FILE}

    def delete(self, run_id: str) -> None:
        """Remove a run folder (renamed aside first, so a crash never leaves half a run that looks whole)."""
        folder = self.root / _checked_id(run_id)
        if not folder.is_dir():
            return
        aside = self.root / f".old-{run_id}-{secrets.token_hex(4)}"
        _move(folder, aside)
        _sync_dir(self.root)
        shutil.rmtree(aside, ignore_errors=True)

    def _hold(self, folder: Path) -> None:
        with self._lock:
            self._busy.add(folder.name)

    def _release(self, folder: Path) -> None:
        with self._lock:
            self._busy.discard(folder.name)

    # --- reading ------------------------------------------------------------------------------

    def recover(self) -> None:
        """Finish what a crash interrupted: an old run renamed aside with no new one in place goes back;
        other leftovers (staging folders, old runs already replaced) are deleted."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            match = _LEFTOVER.fullmatch(folder.name)
            with self._lock:
                busy = folder.name in self._busy
            if match is None or busy or not folder.is_dir() or folder.is_symlink():
                continue
            kind, run_id = match.groups()
            final = self.root / run_id
            if kind == "old" and not final.exists() and (folder / "run.json").is_file():
                _move(folder, final)
            else:
                shutil.rmtree(folder, ignore_errors=True)
        _sync_dir(self.root)

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
        data = json.loads((folder / "run.json").read_text())
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

    def load_images(self, record: RunRecord) -> datasets.Dataset:
        """The user's own images saved with ``record``; ValueError if missing, too large or inconsistent."""
        if not record.has_saved_images:
            raise ValueError("This run's images were not kept.")
        path = record.folder / DATA_FILE
        with zipfile.ZipFile(path) as archive:  # sizes before reading: a planted file must not fill memory
            if sum(info.file_size for info in archive.infolist()) > self.max_data_bytes + MB:
                raise ValueError("This run's saved images are larger than a run may keep.")
        with np.load(path, allow_pickle=False) as saved:
            arrays = {name: saved[name] for name in ("x_train", "y_train", "x_test", "y_test", "class_names")}
        class_names = [str(name) for name in arrays["class_names"]]
        _check_images(arrays, len(class_names))
        info = record.data
        return datasets.make_dataset(
            str(info.get("key", "custom")), str(info.get("title", record.dataset_ref.get("title", "Your images"))),
            str(info.get("source", "Your own images, kept with the run")), arrays["x_train"], arrays["y_train"],
            arrays["x_test"], arrays["y_test"], class_names, bool(info.get("light_on_dark", False)),
        )  # fmt: skip


def _record(job: TrainingJob, progress: Progress) -> dict:
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


def _check_images(arrays: dict[str, np.ndarray], num_classes: int) -> None:
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    if x_train.dtype != np.uint8 or x_test.dtype != np.uint8 or x_train.ndim != 4 or x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError("The saved images are not uint8 (N, H, W, C) arrays of one shape.")
    for x, y in ((x_train, arrays["y_train"]), (x_test, arrays["y_test"])):
        if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu" or (len(y) and not 0 <= int(y.min()) <= int(y.max()) < num_classes):
            raise ValueError("The saved labels do not match the saved images and classes.")


# --- files: rename, link, fsync --------------------------------------------------------------------


def _move(source: Path, target: Path) -> None:
    """One rename (a step of replacing a run; tests make it fail to simulate a crash)."""
    source.rename(target)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copy2(source, target)


def _write_json(path: Path, record: dict) -> None:
    with open(path, "w", encoding="utf-8") as file:
        file.write(json.dumps(record, indent=1, allow_nan=True))


def _sync_tree(folder: Path) -> None:
    """fsync every file under ``folder``, then the folders: the data is on disk before the rename makes it the run."""
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as file:
                os.fsync(file.fileno())
    for path in [*sorted(p for p in folder.rglob("*") if p.is_dir()), folder]:
        _sync_dir(path)


def _sync_dir(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder: its renames are durable enough there
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


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
    "RunRecord", "RunStore", "ENDED_STATES", "default_runs_dir", "is_run_id", "load_model", "restore_job", "restore_summary",
    "summary_dataset",
]  # fmt: skip
