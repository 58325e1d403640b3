"""A run's progress as plain data: statuses, the metric log and the snapshot the pages draw.

Nothing here imports Keras: the log is fed numbers (by the training callback, or by a test with
fake logs) and answers what the pages ask — history, thinned per-batch points, best epoch, ETA.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import StrEnum

MAX_BATCH_POINTS = 4000  # per-batch points kept for the live curves; older points are thinned
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "images_per_s")


class Status(StrEnum):
    """Where a run is. A ``StrEnum``: saved as its plain string, compared as one."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"
    DIVERGED = "diverged"

    @property
    def active(self) -> bool:
        return self in (Status.QUEUED, Status.RUNNING)

    @property
    def ended(self) -> bool:
        return not self.active


ACTIVE_STATES = (Status.QUEUED, Status.RUNNING)
ENDED_STATES = (Status.FINISHED, Status.STOPPED, Status.FAILED, Status.DIVERGED)


@dataclass(frozen=True)
class Progress:
    """A consistent copy of a run's state, safe to read from the UI thread."""

    job_id: str
    status: Status
    message: str
    details: str
    epoch: int  # epochs completed
    epochs: int  # epochs planned in all (grows when a run is continued)
    batch: int  # batches done in the current epoch
    batches_per_epoch: int
    elapsed_s: float
    eta_s: float | None
    queue_position: int | None
    history: dict[str, list[float]]  # per epoch: see HISTORY_KEYS
    batch_steps: list[float]  # fractional epoch of each recorded batch
    batch_loss: list[float]
    batch_accuracy: list[float]
    test_accuracy: float | None
    test_loss: float | None
    best_epoch: int | None  # 1-based epoch with the best validation loss
    version: int = 0  # grows with every recorded point or status change: a cache key for drawings
    fine_tune_from: int | None = None  # epochs done when fine-tuning began (a pretrained backbone's phase 2)
    budget_s: float | None = None  # a time-budgeted session: its seconds of computing (the room's limit included)
    budget_used_s: float = 0.0  # seconds of it computed at the last batch report
    budget_planned: bool = False  # the epochs that fit are known (the first batches have been timed)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATES

    @property
    def budget_left_s(self) -> float | None:
        """The countdown of a budgeted run: seconds of its budget not yet computed (None without a budget)."""
        return None if self.budget_s is None else max(0.0, self.budget_s - self.budget_used_s)

    @property
    def fraction_done(self) -> float:
        if self.budget_s and self.active:  # the plan moves as the pace is measured; the clock does not
            return min(1.0, self.budget_used_s / self.budget_s)
        total = self.epochs * max(1, self.batches_per_epoch)
        return min(1.0, (self.epoch * self.batches_per_epoch + self.batch) / total) if total else 0.0

    @property
    def best_val_accuracy(self) -> float | None:
        values = [v for v in self.history.get("val_accuracy", []) if math.isfinite(v)]
        return max(values) if values else None


@dataclass
class ProgressLog:
    """Metrics of one run as they arrive; not thread-safe by itself (the job holds a lock around it)."""

    epoch: int = 0  # epochs completed
    target_epochs: int = 0
    batch: int = 0  # batches done in the current epoch
    batches_per_epoch: int = 0
    history: dict[str, list[float]] = field(default_factory=lambda: {key: [] for key in HISTORY_KEYS})
    batch_steps: list[float] = field(default_factory=list)
    batch_loss: list[float] = field(default_factory=list)
    batch_accuracy: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    fine_tune_from: int | None = None  # epochs done when fine-tuning a pretrained backbone began
    budget_s: float | None = None  # a time-budgeted session's seconds of computing
    budget_used_s: float = 0.0
    budget_planned: bool = False
    version: int = 0
    _thin: int = 1  # record one report in every _thin, doubling when the points are full
    _reports: int = 0  # batch reports so far (one per batch, or per chunk of batches run in one call)
    _session_start_step: int = 0  # global batch index where this training session began
    _session_started_at: float | None = None
    _computing_s: float = 0.0  # seconds this session actually computed (waiting for a turn excluded)
    _pace_from: tuple[float, int] | None = None  # (computing s, steps) once a batch was counted: the pace leaves the build out
    _generation: int = 0  # grows when the batch points are thinned: a mirror's cursor into them is then stale

    # --- mirroring: another process keeps a copy of this log up to date from deltas ---------------

    def delta(self, cursor: tuple | None) -> tuple[tuple, dict]:
        """(new cursor, what changed since ``cursor``): plain numbers and lists, the whole log when the cursor is stale."""
        generation, points, epochs = cursor or (-1, 0, 0)
        whole = generation != self._generation
        start, first_epoch = (0, 0) if whole else (points, epochs)
        change = {
            "whole": whole, "epoch": self.epoch, "target_epochs": self.target_epochs, "batch": self.batch,
            "batches_per_epoch": self.batches_per_epoch, "best_epoch": self.best_epoch, "fine_tune_from": self.fine_tune_from,
            "version": self.version, "computing_s": self._computing_s, "session_start_step": self._session_start_step,
            "pace_from": self._pace_from,
            "budget": [self.budget_s, self.budget_used_s, self.budget_planned],
            "history": {key: values[first_epoch:] for key, values in self.history.items()},
            "batch_steps": self.batch_steps[start:], "batch_loss": self.batch_loss[start:],
            "batch_accuracy": self.batch_accuracy[start:],
        }  # fmt: skip
        return (self._generation, len(self.batch_steps), len(self.history["loss"])), change

    def apply(self, change: dict) -> None:
        """Bring this mirror up to date with a ``delta`` of the original."""
        if change["whole"]:
            self.history = {key: [] for key in HISTORY_KEYS}
            self.batch_steps, self.batch_loss, self.batch_accuracy = [], [], []
        for key, values in change["history"].items():
            self.history.setdefault(key, []).extend(values)
        self.batch_steps.extend(change["batch_steps"])
        self.batch_loss.extend(change["batch_loss"])
        self.batch_accuracy.extend(change["batch_accuracy"])
        self.epoch, self.target_epochs, self.batch = change["epoch"], change["target_epochs"], change["batch"]
        self.batches_per_epoch, self.best_epoch = change["batches_per_epoch"], change["best_epoch"]
        self.fine_tune_from, self._computing_s = change["fine_tune_from"], change["computing_s"]
        self._session_start_step = change["session_start_step"]
        self._pace_from = tuple(change["pace_from"]) if change.get("pace_from") else None
        self.budget_s, self.budget_used_s, self.budget_planned = change.get("budget", (None, 0.0, False))
        self.version = max(self.version + 1, change["version"])

    def begin_session(self, batches_per_epoch: int, now: float | None = None) -> None:
        """A training session (the first, or a continuation) starts at the current epoch."""
        self.batches_per_epoch = batches_per_epoch
        self._session_start_step = self.epoch * batches_per_epoch
        self._session_started_at = time.time() if now is None else now
        self._computing_s = 0.0
        self._pace_from = None
        self.budget_s, self.budget_used_s, self.budget_planned = None, 0.0, False
        self.version += 1

    def add_compute_time(self, seconds: float) -> None:
        self._computing_s += seconds
        if self._pace_from is None and self.steps_done > self._session_start_step:
            # The first count after a batch holds the build and the tracing too: the pace is measured from here on.
            self._pace_from = (self._computing_s, self.steps_done)

    def record_budget(self, budget_s: float | None, used_s: float, planned_epochs: int | None) -> None:
        """A budgeted session's clock and plan: the target becomes the epochs that fit (set again as the pace is measured)."""
        self.budget_s, self.budget_used_s = budget_s, used_s
        if planned_epochs is not None:
            self.budget_planned = True
            self.target_epochs = planned_epochs
        self.version += 1

    @property
    def computing_s(self) -> float:
        """Seconds this training session computed (waiting for a turn excluded)."""
        return self._computing_s

    def record_batch(self, batch: int, loss: float, accuracy: float) -> None:
        """``batch``: 0-based index of the last batch done in this epoch (Keras reports chunks by their last batch)."""
        self.batch = min(batch + 1, self.batches_per_epoch) if self.batches_per_epoch else batch + 1  # never "340/338"
        self._reports += 1
        if (self._reports - 1) % self._thin == 0:
            self.batch_steps.append(self.epoch + self.batch / max(1, self.batches_per_epoch))
            self.batch_loss.append(loss)
            self.batch_accuracy.append(accuracy)
            if len(self.batch_steps) >= MAX_BATCH_POINTS:
                self.batch_steps, self.batch_loss = self.batch_steps[::2], self.batch_loss[::2]
                self.batch_accuracy = self.batch_accuracy[::2]
                self._thin *= 2
                self._generation += 1
        self.version += 1

    def record_epoch(self, epoch: int, logs: dict) -> bool:
        """Record epoch ``epoch`` (0-based); True when its validation loss is the best so far."""
        self.epoch, self.batch = epoch + 1, 0
        for key in HISTORY_KEYS:
            self.history[key].append(float(logs.get(key, math.nan)))
        val_loss = float(logs.get("val_loss", math.nan))
        previous = [v for v in self.history["val_loss"][:-1] if math.isfinite(v)]
        improved = math.isfinite(val_loss) and (not previous or val_loss < min(previous))
        if improved:
            self.best_epoch = self.epoch
        self.version += 1
        return improved

    def epochs_since_best(self) -> int | None:
        return None if self.best_epoch is None else self.epoch - self.best_epoch

    @property
    def steps_done(self) -> int:
        return self.epoch * self.batches_per_epoch + self.batch

    def eta_s(self, share: float = 1.0) -> float | None:
        """Seconds left at this session's pace of computing; ``share`` is the part of the time it gets a turn.

        The pace counts from the first batches on (``_pace_from``): building the model and tracing its first steps
        take seconds that the remaining batches will not, and would make the first estimates many times too long.
        """
        total = self.target_epochs * self.batches_per_epoch
        if self._pace_from is None or not total:
            return None
        computing, steps = self._pace_from
        done = self.steps_done - steps
        if done <= 0 or self._computing_s <= computing:
            return None
        return (self._computing_s - computing) / done * (total - self.steps_done) / max(share, 1e-3)

    def progress(self, job_id: str, status: Status, message: str, details: str, elapsed_s: float, eta_s: float | None,
                 queue_position: int | None, test: tuple[float, float] | None) -> Progress:  # fmt: skip
        """A copy of everything, for the UI thread."""
        return Progress(
            job_id=job_id, status=status, message=message, details=details, epoch=self.epoch, epochs=self.target_epochs,
            batch=self.batch, batches_per_epoch=self.batches_per_epoch, elapsed_s=elapsed_s, eta_s=eta_s, queue_position=queue_position,
            history={key: list(values) for key, values in self.history.items()}, batch_steps=list(self.batch_steps),
            batch_loss=list(self.batch_loss), batch_accuracy=list(self.batch_accuracy), test_accuracy=test[0] if test else None,
            test_loss=test[1] if test else None, best_epoch=self.best_epoch, version=self.version, fine_tune_from=self.fine_tune_from,
            budget_s=self.budget_s, budget_used_s=self.budget_used_s, budget_planned=self.budget_planned,
        )  # fmt: skip

    @classmethod
    def restored(cls, history: dict[str, list[float]], best_epoch: int | None) -> ProgressLog:
        """The log of a run read back from disk."""
        log = cls(history={key: [float(v) for v in history.get(key, [])] for key in HISTORY_KEYS}, best_epoch=best_epoch)
        log.epoch = log.target_epochs = len(log.history["loss"])
        return log
