"""A run that trains elsewhere, as this process sees it: its description and a mirror of its progress.

The Ray engine keeps one ``MirroredRun`` per run in its registry, where the in-process engine keeps a
``TrainingJob``; both answer the same questions (status, snapshot, delta), so the bookkeeping above
them — rules, listing, idle stop — is shared.
"""

from __future__ import annotations

import threading
import time

from dcnn_core.training import runs
from dcnn_core.training.description import Described, RunDescription, fine_tune_epochs
from dcnn_core.training.progress import Progress, ProgressLog, Status


class MirroredRun(Described):
    """A run training in a Ray worker, as this process sees it: its description and a mirror of its progress."""

    def __init__(self, description: RunDescription, worker: int | None, *, record: runs.RunRecord | None = None, stop=None):
        self.description = description
        self.worker = worker  # index of the worker holding it (None: ended, on disk)
        self.last_seen = time.time()
        self.cursor: tuple | None = None
        self._stop = stop  # asks the worker holding it to stop it
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._log = ProgressLog(target_epochs=description.config.epochs + fine_tune_epochs(description.spec))
        self._status, self._message, self._details = Status.QUEUED, "Handed to a training worker…", ""
        self._elapsed, self._eta, self._place, self._test = 0.0, None, None, None
        self._parameters: int | None = None
        self._saved_model = False
        if record is not None:  # an ended run read from the runs folder
            self._log = ProgressLog.restored(record.history, record.best_epoch)
            self._status, self._message = Status(record.status), record.message
            self._elapsed = record.elapsed_s
            self._test = (record.test_accuracy, record.test_loss) if record.test_accuracy is not None else None
            self._parameters = record.parameters or None
            self._saved_model = (record.folder / "model.keras").is_file()
            self._ended.set()

    model = None  # never here: the model lives in the worker, then in the runs folder

    @property
    def status(self) -> Status:
        with self._lock:
            return self._status

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    @property
    def has_model(self) -> bool:
        return self._saved_model

    @property
    def parameters(self) -> int | None:
        return self._parameters

    def touch(self) -> None:
        self.last_seen = time.time()

    def wait(self, timeout: float | None = None) -> bool:
        return self._ended.wait(timeout)

    def request_stop(self, reason: str = "") -> None:
        if self._stop is not None and not self.ended:
            with self._lock:
                if self._status == Status.RUNNING:
                    self._message = "Stopping after the batches in progress…"
            self._stop(self.job_id, reason)

    def snapshot(self) -> Progress:
        with self._lock:
            return self._log.progress(self.job_id, self._status, self._message, self._details, self._elapsed, self._eta,
                                      self._place, self._test)  # fmt: skip

    def delta(self, cursor: tuple | None) -> tuple[tuple, dict]:
        with self._lock:
            return self._log.delta(cursor)

    def apply(self, answer: dict) -> None:
        """A worker's answer to ``poll`` for this run."""
        with self._lock:
            self.cursor = tuple(answer["cursor"])
            self._log.apply(answer["change"])
            self._status, self._message, self._details = Status(answer["status"]), answer["message"], answer["details"]
            self._elapsed, self._eta, self._place = answer["elapsed_s"], answer["eta_s"], answer["queue_position"]
            self._test = tuple(answer["test"]) if answer["test"] else None
        if answer["ended"]:
            self.finish()

    def finish(self, status: Status | None = None, message: str = "") -> None:
        """The run has ended (``status``: as this process decided, e.g. its worker was lost)."""
        with self._lock:
            if status is not None:
                self._status, self._message, self._eta, self._place = status, message, None, None
                self._log.version += 1
        self.worker = None
        self._saved_model = status is None or self._saved_model
        self._ended.set()

    def mark_saved(self, record: runs.RunRecord | None) -> None:
        """What the runs folder holds of it now (None: nothing readable)."""
        self._parameters = record.parameters or None if record is not None else self._parameters
        self._saved_model = record is not None and (record.folder / "model.keras").is_file()
