"""One run's state and controls, safe from any thread: ``TrainingJob``.

The pieces, each with one job:

- ``dcnn_core.training.description.RunDescription`` — what is trained, on what, for whom (data; never changed);
- ``dcnn_core.training.progress.ProgressLog`` — the metrics as they arrive (no Keras);
- ``TrainingJob`` (here) — a run's status, log and controls; every change goes through its methods, under its lock;
- ``dcnn_core.training.lifecycle`` — what the worker thread does: take turns, build, fit, evaluate, finish;
- ``dcnn_core.training.engine`` — the one door the pages, the CLI and the benchmarks use.

Nothing here touches Streamlit or Keras.
"""

from __future__ import annotations

import dataclasses
import threading
import time

from dcnn_core.data.datasets import Dataset
from dcnn_core.design.spec import ModelSpec
from dcnn_core.training.config import OPTIMIZERS, Augmentation, TrainConfig
from dcnn_core.training.description import Described, RunDescription, RunLimits, fine_tune_epochs
from dcnn_core.training.progress import ACTIVE_STATES, ENDED_STATES, HISTORY_KEYS, MAX_BATCH_POINTS, Progress, ProgressLog, Status
from dcnn_core.training.scheduler import FairScheduler

__all__ = [
    "OPTIMIZERS", "Augmentation", "TrainConfig", "TrainingJob", "RunDescription", "RunLimits", "Progress", "Status",
    "ACTIVE_STATES", "ENDED_STATES", "HISTORY_KEYS", "MAX_BATCH_POINTS", "QUEUED", "RUNNING", "FINISHED", "STOPPED",
    "FAILED", "DIVERGED",
]  # fmt: skip

QUEUED, RUNNING, FINISHED, STOPPED, FAILED, DIVERGED = (Status.QUEUED, Status.RUNNING, Status.FINISHED, Status.STOPPED,
                                                        Status.FAILED, Status.DIVERGED)  # fmt: skip
WAITING = "Waiting for its first turn at the processor…"


class TrainingJob(Described):
    """One run: its state and its controls, safe to call from any thread. The worker is ``lifecycle.run_job``."""

    def __init__(self, spec: ModelSpec | RunDescription, dataset: Dataset, config: TrainConfig | None = None, owner: str = "",
                 max_parameters: int | None = None, *, distribution=None, outcome: dict | None = None):  # fmt: skip
        if isinstance(spec, RunDescription):
            description = spec
        else:
            reference = {"key": dataset.key, "options": {}, "title": dataset.title}
            description = RunDescription(spec, config, reference, owner=owner, max_parameters=max_parameters)
        description.config.validate()
        self.description = description
        self.dataset = dataset
        self.distribution = distribution  # a tf.distribute.Strategy to build and train under (headless CLI); None: TF's default
        self.model = None  # the Keras model; safe to use for prediction once the job has ended
        self.best_weights: list | None = None  # weights at the best validation loss
        self.last_seen = time.time()  # last time its owner's page looked at it
        self.on_end = None  # called with (job, final Progress) when a training ends, before it shows as ended
        self.scheduler: FairScheduler | None = None  # set by the registry that runs it
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._stop_reason = ""
        self._status, self._message, self._details = QUEUED, WAITING, ""
        self._log = ProgressLog(target_epochs=description.config.epochs + fine_tune_epochs(description.spec))
        self._elapsed_before = 0.0  # training time of earlier sessions of a continued run
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._test: tuple[float, float] | None = None
        self._had_turn = False
        if outcome is not None:  # an ended run read back from disk
            self._status, self._message = Status(outcome["status"]), outcome.get("message", "")
            self._log = ProgressLog.restored(outcome.get("history", {}), outcome.get("best_epoch"))
            self._elapsed_before = float(outcome.get("elapsed_s", 0.0))
            self._test = outcome.get("test")
            self._ended.set()

    @classmethod
    def restored(cls, description: RunDescription, dataset: Dataset, model, outcome: dict) -> TrainingJob:
        """An ended run read back from disk: ``outcome`` has status, message, history, elapsed_s, best_epoch, test."""
        job = cls(description, dataset, outcome=outcome)
        job.model = model
        return job

    # --- controls (any thread) -------------------------------------------------------------------

    def request_stop(self, reason: str = "") -> None:
        """Ask training to end after the batches in progress (at most BATCHES_PER_CALL); the weights so far are kept."""
        self._stop_reason = reason
        self._stop.set()
        with self._lock:
            if self._status == RUNNING:
                self._message = "Stopping after the batches in progress…"

    def prepare_continue(self, extra_epochs: int, limits: RunLimits | None = None) -> None:
        """Make an ended run ready to train ``extra_epochs`` more, from its current weights (callers hold the registry's lock).

        ``limits``: the room's limits for this session of training (a run started alone and continued in a room gets them).
        """
        if not self.ended or self.model is None:
            raise ValueError("Only a finished or stopped run with a model can be continued.")
        if self.status in (FAILED, DIVERGED):
            raise ValueError("A failed or diverged run cannot be continued; start a new one.")
        if not 1 <= extra_epochs <= 500:
            raise ValueError("Continue for 1 to 500 more epochs.")
        if limits is not None:
            self.description = dataclasses.replace(self.description, limits=limits)
        with self._lock:
            self._log.target_epochs = self._log.epoch + extra_epochs
            self._status, self._message, self._details = QUEUED, WAITING, ""
            if self._started_at is not None:
                self._elapsed_before += (self._ended_at or time.time()) - self._started_at
            self._started_at = self._ended_at = self._test = None
            self._had_turn = False
            self._log.version += 1
        self._stop.clear()
        self._ended.clear()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has ended; True if it did within ``timeout``."""
        return self._ended.wait(timeout)

    def touch(self) -> None:
        self.last_seen = time.time()

    # --- reading (any thread) --------------------------------------------------------------------

    @property
    def status(self) -> Status:
        with self._lock:
            return self._status

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    @property
    def version(self) -> int:
        with self._lock:
            return self._log.version

    @property
    def has_model(self) -> bool:
        return self.model is not None

    @property
    def parameters(self) -> int | None:
        model = self.model
        return int(model.count_params()) if model is not None else None

    def training_history(self) -> dict[str, list[float]] | None:
        with self._lock:
            return {key: list(values) for key, values in self._log.history.items()}

    def snapshot(self) -> Progress:
        scheduler = self.scheduler
        place = scheduler.place(self.job_id) if scheduler is not None else None
        wait = scheduler.first_turn_wait_s(self.job_id) if scheduler is not None else None
        with self._lock:
            log, now = self._log, time.time()
            elapsed = self._elapsed_before + ((self._ended_at or now) - self._started_at if self._started_at else 0.0)
            eta = None
            if self._status == QUEUED:
                eta = wait
            elif self._status == RUNNING:
                eta = log.eta_s(self._share())
            return log.progress(self.job_id, self._status, self._message, self._details, elapsed, eta,
                                place if self._status == QUEUED else None, self._test)  # fmt: skip

    def delta(self, cursor: tuple | None) -> tuple[tuple, dict]:
        """What changed since ``cursor`` (``ProgressLog.delta``), for a process that mirrors this run."""
        with self._lock:
            return self._log.delta(cursor)

    def _share(self) -> float:
        scheduler = self.scheduler
        return 1.0 if scheduler is None else scheduler.share(scheduler.computing_count() + scheduler.waiting_count())

    # --- what the worker reports (``lifecycle``), each under the lock -------------------------------

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def had_turn(self) -> bool:
        with self._lock:
            return self._had_turn

    def began(self) -> None:
        """Its first turn of a training session: running from now on."""
        with self._lock:
            self._had_turn = True
            self._status = RUNNING
            self._message = "Building the model…" if self.model is None else "Continuing…"
            self._started_at = self._started_at or time.time()
            self._log.version += 1

    def say(self, message: str) -> None:
        with self._lock:
            self._message = message
            self._log.version += 1

    def begin_session(self, batches_per_epoch: int) -> None:
        with self._lock:
            self._log.begin_session(batches_per_epoch)
            self._message = "Training…"

    def computing_s(self) -> float:
        """Seconds of computing in this training session, counted up to the last batch of the turn in progress."""
        with self._lock:
            return self._log.computing_s

    def add_compute_time(self, seconds: float) -> None:
        with self._lock:
            self._log.add_compute_time(seconds)

    def epochs(self) -> tuple[int, int]:
        """(epochs done, epochs planned)."""
        with self._lock:
            return self._log.epoch, self._log.target_epochs

    def cap_epochs(self, most: int) -> None:
        with self._lock:
            self._log.target_epochs = min(self._log.target_epochs, most)

    def record_budget(self, budget_s: float | None, used_s: float, planned_epochs: int | None = None) -> None:
        """A time-budgeted session's clock and, once the pace is measured, the epochs that fit (``budget.BudgetPlan``)."""
        with self._lock:
            self._log.record_budget(budget_s, used_s, planned_epochs)

    def record_batch(self, batch: int, loss: float, accuracy: float) -> int:
        """Record a batch report; returns the epoch it belongs to (0-based)."""
        with self._lock:
            self._log.record_batch(batch, loss, accuracy)
            return self._log.epoch

    def record_epoch(self, epoch: int, logs: dict, learning_rate: float, seconds: float) -> tuple[bool, int | None]:
        """Record an epoch computed in ``seconds``; returns (best so far, epochs since the best)."""
        with self._lock:
            images = self._log.batches_per_epoch * self.config.batch_size
            improved = self._log.record_epoch(epoch, dict(logs, learning_rate=learning_rate, images_per_s=images / max(seconds, 1e-9)))
            return improved, self._log.epochs_since_best()

    def fine_tuning_began(self, message: str) -> None:
        with self._lock:
            self._log.fine_tune_from = self._log.epoch
            self._message = message
            self._log.version += 1

    def fine_tune_from(self) -> int | None:
        with self._lock:
            return self._log.fine_tune_from

    def record_test(self, accuracy: float, loss: float) -> None:
        with self._lock:
            self._test = (accuracy, loss)
            self._log.version += 1

    def stopped_message(self, where: str = "") -> str:
        """Why and where it stopped; ``where`` when not in training (e.g. "the test-set evaluation after epoch 3")."""
        with self._lock:
            where = where or f"epoch {self._log.epoch + 1}, batch {self._log.batch}"
        if self._stop_reason:
            return f"{self._stop_reason} (at {where}). The model trained so far is kept."
        return f"Stopped by you at {where}. The model trained so far is kept."

    def ending(self) -> None:
        """Training is over; the outcome is being saved."""
        with self._lock:
            self._ended_at = time.time()
            if self._status == RUNNING:
                self._message = "Saving the run…"

    def outcome(self, status: Status, message: str, details: str = "") -> Progress:
        """The final progress as it will be published (for saving before it is)."""
        return dataclasses.replace(self.snapshot(), status=status, message=message, details=details)

    def end(self, status: Status, message: str, details: str = "") -> None:
        """Publish the outcome: from now on the run shows as ended."""
        with self._lock:
            self._status, self._message, self._details = status, message, details
            self._log.version += 1
        self._ended.set()

    def run(self, scheduler: FairScheduler | None = None) -> None:
        """The worker thread's body: wait for turns, train, record the outcome instead of raising."""
        from dcnn_core.training import lifecycle

        if scheduler is not None:
            self.scheduler = scheduler
        lifecycle.run_job(self)
