"""What a run's Keras callback does on the worker thread: the log, divergence, early stopping and a time budget.

``Recorder`` holds the decisions (no Keras: a test can feed it numbers); ``callback_class`` is the thin Keras
callback that feeds it and carries out what it says — a new learning rate, or stop after these batches.
"""

from __future__ import annotations

import math
from functools import cache
from typing import TYPE_CHECKING, Protocol

from dcnn_core.training.budget import BudgetPlan

if TYPE_CHECKING:
    from dcnn_core.training.job import TrainingJob

DIVERGED_LOSS = 1e6  # cross-entropy starts near ln(classes); a mean loss this big means the weights blew up


class Diverged(Exception):
    pass


class Turns(Protocol):
    """The job's turns at the processor, as the recorder uses them (``lifecycle._Turns``)."""

    def compute_s(self) -> float: ...

    def between_batches(self) -> None: ...


class Recorder:
    """What the Keras callback reports, on the worker thread: batches and epochs into the log; divergence; early stopping.

    With a time budget (``start_budget``) it also keeps the plan: after each report it has the rate for the next
    batches (``rate``, None to leave it) and whether the budget is spent (``stop``).
    """

    def __init__(self, job: TrainingJob, turns: Turns):
        self.job, self.turns = job, turns
        self.epoch_compute = 0.0
        self.plan: BudgetPlan | None = None
        self.peak = 0.0
        self.drives_rate = False
        self.rate: float | None = None  # the rate the next batches train at, once decided
        self.stop = False  # the budget is spent: end the epoch after the batches in progress

    def start_budget(self, plan: BudgetPlan | None, peak: float, drives_rate: bool) -> None:
        """A training phase begins: with a plan, the rate per batch (``drives_rate``) and the clock are the plan's."""
        self.plan, self.peak, self.drives_rate, self.stop = plan, peak, drives_rate and plan is not None, False
        self.rate = None
        if plan is not None:
            self.job.record_budget(plan.budget_s, self.turns.compute_s(), plan.epochs if plan.fixed_epochs is not None else None)

    def _step(self, epoch: int, batch: int) -> int:
        return epoch * max(1, self.plan.batches_per_epoch) + batch

    def on_batch(self, batch: int, logs: dict) -> None:
        loss = float(logs.get("loss", math.nan))
        epoch = self.job.record_batch(batch, loss, float(logs.get("accuracy", math.nan)))
        if not math.isfinite(loss) or loss > DIVERGED_LOSS:
            what = f"became {loss}" if not math.isfinite(loss) else f"exploded to {loss:.3g}"
            raise Diverged(
                f"Training stopped at epoch {epoch + 1}, batch {batch + 1}: the loss {what}. "
                "The learning rate is probably too high — lower it (e.g. ÷10) and train again."
            )
        if self.plan is not None:
            self._budget_batch(epoch, batch + 1)
        self.turns.between_batches()

    def _budget_batch(self, epoch: int, batches: int) -> None:
        plan, compute = self.plan, self.turns.compute_s()
        step = self._step(epoch, batches)
        planned = plan.on_batches(step, compute)
        if plan.over(compute) and not self.stop:  # out of time: this epoch is the last
            self.stop, planned = True, True
            plan.epochs = epoch + 1
        self.job.record_budget(plan.budget_s, compute, plan.epochs if planned else None)
        if self.drives_rate:
            self.rate = plan.rate(self.peak, step)

    def on_epoch_begin(self) -> None:
        self.epoch_compute = self.turns.compute_s()
        if self.drives_rate:
            self.rate = self.plan.rate(self.peak, self._step(self.job.epochs()[0], 0))

    def on_epoch(self, epoch: int, logs: dict, learning_rate: float) -> bool:
        """Record an epoch; True when early stopping, or the time budget, says to stop."""
        job = self.job
        seconds = self.turns.compute_s() - self.epoch_compute
        improved, since_best = job.record_epoch(epoch, logs, learning_rate, seconds)
        if improved:
            job.best_weights = job.model.get_weights()  # numpy copies
        out_of_time = False
        if self.plan is not None:
            compute = self.turns.compute_s()
            out_of_time = self.plan.on_epoch(epoch + 1, seconds, compute) or self.stop
            job.record_budget(self.plan.budget_s, compute, self.plan.epochs)
        early = job.config.early_stopping and since_best is not None and since_best >= job.config.patience
        return early or out_of_time


@cache
def callback_class():
    from dcnn_core.runtime import import_keras

    keras = import_keras()

    class ProgressCallback(keras.callbacks.Callback):
        """Feeds a job's progress; takes turns; sets a budget's rate; stops on request, divergence, early stopping or time."""

        def __init__(self, recorder: Recorder):
            super().__init__()
            self.recorder = recorder

        def _apply(self) -> None:
            recorder = self.recorder
            if recorder.rate is not None:
                self.model.optimizer.learning_rate = recorder.rate
                recorder.rate = None
            if recorder.stop:
                self.model.stop_training = True

        def on_epoch_begin(self, epoch, logs=None):
            self.recorder.on_epoch_begin()
            self._apply()

        def on_train_batch_end(self, batch, logs=None):
            self.recorder.on_batch(batch, logs or {})
            self._apply()

        def on_test_batch_end(self, batch, logs=None):
            self.recorder.turns.between_batches()

        def on_epoch_end(self, epoch, logs=None):
            rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            if self.recorder.on_epoch(epoch, logs or {}, rate):
                self.model.stop_training = True

    return ProgressCallback
