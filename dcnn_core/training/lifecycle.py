"""What a run's worker thread does: take turns at the processor, build, fit, evaluate, save, publish.

It talks to its ``TrainingJob`` only through the job's methods; whatever engine hosts the thread (this
process, a worker process elsewhere) runs the same code.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import traceback
from typing import TYPE_CHECKING

import numpy as np

from dcnn_core import runtime
from dcnn_core.data.datasets import Dataset
from dcnn_core.design import backbones
from dcnn_core.design.spec import ModelSpec
from dcnn_core.naming import counted
from dcnn_core.training import budget, failures, pacing
from dcnn_core.training.config import TrainConfig, build_optimizer, scheduled_rate
from dcnn_core.training.description import fine_tune_epochs
from dcnn_core.training.progress import Status
from dcnn_core.training.recorder import Diverged as _Diverged
from dcnn_core.training.recorder import Recorder as _Recorder
from dcnn_core.training.recorder import callback_class as _callback_class
from dcnn_core.training.scheduler import FairScheduler

if TYPE_CHECKING:  # the job calls this module to run; this module only uses what the job offers
    from dcnn_core.training.job import TrainingJob

DIVERGED, FAILED, FINISHED, STOPPED = Status.DIVERGED, Status.FAILED, Status.FINISHED, Status.STOPPED

BATCHES_PER_CALL = pacing.MOST_BATCHES_PER_CALL  # Keras's ``steps_per_execution`` at most; fewer for a costly design


class _StopRequested(Exception):
    """Raised inside fit to end training at once, without the epoch's validation pass."""


_seed_lock = threading.Lock()  # Keras's seed is process-wide: set it and build under one lock


def build_and_compile(spec: ModelSpec, dataset: Dataset, config: TrainConfig, max_parameters: int | None = None,
                      batches_per_call: int = 1):  # fmt: skip
    """A compiled Keras model for ``spec`` on ``dataset``, initialised from ``config.seed``."""
    from dcnn_core.design import recipes
    from dcnn_core.design.build import build_model
    from dcnn_core.runtime import cpu_has_bfloat16, dtype_policy, import_keras

    keras = import_keras()
    policy = keras.mixed_precision.global_policy().name  # set per thread, by the headless CLI (float16 on GPUs)
    if not policy.startswith("mixed_"):  # bfloat16 where the CPU has it and the design measured faster (recipes)
        policy = recipes.precision_for(config.precision, spec.name, cpu_has_bfloat16())
    with _seed_lock, dtype_policy(policy):
        keras.utils.set_random_seed(config.seed)
        model = build_model(spec, dataset.input_shape, dataset.num_classes, max_parameters, float32_output=policy.startswith("mixed_"))
    model.compile(optimizer=build_optimizer(keras, config), loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=batches_per_call)  # fmt: skip
    return model


def split_indices(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of ``count`` training images into (train, validation) indices, each sorted."""
    order = np.random.default_rng(seed).permutation(count)
    cut = int(round(count * (1 - fraction))) if fraction > 0 else count
    return np.sort(order[:cut]), np.sort(order[cut:])


def split_train_validation(dataset: Dataset, fraction: float, seed: int):
    """The split as arrays ``(x_train, y_train, x_val, y_val)`` (copies: for scripts and tests, not jobs)."""
    train, val = split_indices(len(dataset.x_train), fraction, seed)
    return dataset.x_train[train], dataset.y_train[train], dataset.x_train[val], dataset.y_train[val]


def finished_message(done: int, description) -> str:
    """'Finished 1 epoch.', 'Finished 10 epochs.' — and, when the room's limit set the count, that it did."""
    text = f"Finished {counted(done, 'epoch')}."
    if description.config.budget_s is not None:  # a time-budgeted run: the epochs were the ones that fit
        from dcnn_core.design.recipes import budget_note

        text = text[:-1] + f", as many as fit in its {budget.describe_budget(description.config.budget_s)} budget."
        text += budget_note(description.spec.name, done)
    most = description.limits.max_epochs
    if most is not None and description.config.epochs >= most:
        text += f" The room's limit is {counted(most, 'epoch')} per run (shared server); Continue trains more."
    return text


def run_job(job: TrainingJob) -> None:
    """The worker thread's body: wait for turns, train, record the outcome instead of raising."""
    _Lifecycle(job).run()


class _Turns:
    """A job's turns at the processor: wait for one, hand it on when it is over, count the time computed."""

    def __init__(self, job: TrainingJob):
        self.job = job
        self.scheduler = job.scheduler or FairScheduler(slots=1, slice_s=math.inf)  # alone: one endless turn
        self.turn_began: float | None = None

    def take_turn(self, first: bool = False) -> bool:
        job = self.job
        if not self.scheduler.acquire(job.job_id, cancelled=lambda: job.stop_requested, first=first):
            return False
        self.turn_began = time.monotonic()
        runtime.yield_to_web_server()  # the web server's pages come first whenever the cores are contended
        if first:
            job.began()
        return True

    def compute_s(self) -> float:
        """Seconds this training session has computed, the current turn included."""
        return self.job.computing_s() + (time.monotonic() - self.turn_began if self.turn_began is not None else 0.0)

    def end_turn(self) -> None:
        if self.turn_began is not None:
            self.scheduler.release(self.job.job_id)
            self.job.add_compute_time(time.monotonic() - self.turn_began)
            self.turn_began = None

    def count_turn_so_far(self) -> None:
        """Count the current turn's time as computed now, not only when it ends: a lone run's one endless turn
        would otherwise count nothing until the end, and its time-left estimate (time per batch) would never show."""
        if self.turn_began is not None:
            now = time.monotonic()
            self.job.add_compute_time(now - self.turn_began)
            self.turn_began = now

    def between_batches(self) -> None:
        """Hand the processor on when the turn is over; stop when asked or out of time."""
        job = self.job
        self.count_turn_so_far()
        runtime.yield_to_web_server()  # TensorFlow makes its compute threads at the first batches
        limit = job.description.limits.max_compute_s
        if limit and self.compute_s() > limit:
            job.request_stop(f"Stopped at the room's limit of {limit / 60:g} min of training per run")
        if job.stop_requested:
            raise _StopRequested()
        if self.scheduler.turn_is_over(job.job_id):
            self.end_turn()
            if not self.take_turn():
                raise _StopRequested()


class _Lifecycle:
    """What a job's worker thread does: take turns, build, fit, evaluate, save, publish the outcome."""

    def __init__(self, job: TrainingJob):
        self.job = job
        self.turns = _Turns(job)
        self.recorder = _Recorder(job, self.turns)

    def run(self) -> None:
        job = self.job
        try:
            if job.model is None:  # before the first turn: a download never holds the processor or a lock
                backbones.fetch_for(job.spec, on_download=lambda: job.say("Downloading ImageNet weights…"))
            if not self.turns.take_turn(first=not job.had_turn):
                self.finish(STOPPED, "Cancelled before it started." if job.model is None else job.stopped_message())
                return
            self.train()
        except _StopRequested as stop:
            self.finish(STOPPED, str(stop) or job.stopped_message())
        except _Diverged as error:
            self.finish(DIVERGED, str(error))
        except backbones.WeightsUnavailable as error:  # one sentence for the user; the details are in the server log
            self.finish(FAILED, str(error))
        except Exception as error:  # any failure ends this job only; the server keeps serving
            details = traceback.format_exc()
            failures.log_failure(job.job_id, error, details)
            self.finish(FAILED, failures.user_message(error), details)
        finally:
            self.turns.end_turn()
            if job.description.limits.bounded:  # a shared server: many ended runs stay in memory
                _release_training_state(job.model)

    # --- the work -----------------------------------------------------------------------------

    def train(self) -> None:
        from dcnn_core.training import pipeline

        job, config, data = self.job, self.job.config, self.job.dataset
        if job.model is None:
            # Variables made in a strategy's scope are mirrored; fit then splits each (global) batch across replicas.
            with _strategy_scope(job):
                job.model = build_and_compile(job.spec, data, config, job.description.max_parameters, _batches_per_call(job))
        train, val = split_indices(len(data.x_train), config.validation_split, config.seed)
        if len(train) == 0:
            raise ValueError("No training images are left after the validation split.")
        per_epoch = job.description.limits.images_per_epoch
        if per_epoch and len(val) > per_epoch // 4:
            val = val[: max(1, per_epoch // 4)]  # validation in proportion to what an epoch trains on
        job.begin_session(pipeline.batches_per_epoch(len(train), config.batch_size, per_epoch))
        self.fit(train, val, per_epoch)
        self.evaluate_test()
        done, planned = job.epochs()
        if done < planned:
            best = job.snapshot().best_epoch
            self.finish(FINISHED, f"Stopped early at epoch {done}: validation loss stopped improving. "
                                  f"The weights of its best epoch ({best}) are restored.")  # fmt: skip
        else:
            self.finish(FINISHED, finished_message(done, job.description))

    def fit(self, train: np.ndarray, val: np.ndarray, per_epoch: int | None) -> None:
        """Train to the target epoch: in one phase, or — with a pretrained backbone — the head first, then fine-tuning."""
        job, config = self.job, self.job.config
        if not fine_tune_epochs(job.spec):
            self.fit_phase(config, job.epochs()[1], 0, train, val, per_epoch)
        else:
            from dcnn_core.design import backbones

            if job.epochs()[0] < config.epochs and job.fine_tune_from() is None:
                self.fit_phase(config, config.epochs, 0, train, val, per_epoch)  # phase 1: the backbone frozen
                job.cap_epochs(job.epochs()[0] + job.spec.backbone.fine_tune_epochs)  # ended early: fine-tuning gets all its epochs
            phase2 = backbones.fine_tune_config(config, job.spec.backbone)
            if job.fine_tune_from() is None:  # phase 2: the top layers unfrozen, batch norm kept in inference mode
                _start_fine_tuning(job, phase2)
            self.fit_phase(phase2, job.epochs()[1], job.fine_tune_from(), train, val, per_epoch)
        done, planned = job.epochs()
        if job.best_weights is not None and (config.early_stopping or done < planned):
            job.model.set_weights(job.best_weights)

    def fit_phase(self, config: TrainConfig, end: int, first_epoch: int, train, val, per_epoch: int | None) -> None:
        """``fit`` from the current epoch to ``end`` with ``config``'s schedule (counted from ``first_epoch``)."""
        from dcnn_core.runtime import import_keras
        from dcnn_core.training import pipeline

        keras, job, data = import_keras(), self.job, self.job.dataset
        done = job.epochs()[0]
        if done >= end:
            return
        callbacks = [_callback_class()(self.recorder)]
        plan = None if first_epoch else budget.session_plan(
            config, epochs_done=done, end=end, batches_per_epoch=pipeline.batches_per_epoch(len(train), config.batch_size, per_epoch),
            validation_images=len(val), test_images=len(data.x_test), room_limit_s=job.description.limits.max_compute_s,
            backbone=bool(fine_tune_epochs(job.spec)))  # fmt: skip
        self.recorder.start_budget(plan, config.learning_rate, drives_rate=config.schedule == "cosine")  # per batch, to zero at the end
        if config.schedule == "plateau":
            callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=config.step_factor, patience=config.patience))
        elif config.schedule != "constant" and not (plan is not None and config.schedule == "cosine"):
            callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch, _rate: scheduled_rate(config, epoch - first_epoch)))
        validation = pipeline.evaluation_dataset(data.x_train, data.y_train, pacing.of(job).evaluation_batch, val) if len(val) else None
        weights = pipeline.balanced_class_weights(data.y_train[train], data.num_classes) if config.class_weights else None
        job.model.fit(
            pipeline.training_dataset(data.x_train, data.y_train, train, config, per_epoch),
            epochs=end, initial_epoch=done, validation_data=validation,
            class_weight=weights, callbacks=callbacks, shuffle=False, verbose=0,  # the pipeline shuffles, seeded
        )  # fmt: skip

    def evaluate_test(self) -> None:
        """In batches of about a second's work each: Stop, turns and the time limit are seen between them."""
        from dcnn_core.results.evaluation import accuracy_and_loss, predict_probabilities

        job, data = self.job, self.job.dataset
        if len(data.x_test):
            try:
                probabilities = predict_probabilities(job.model, data.x_test, pacing.of(job).evaluation_batch, self.turns.between_batches)
            except _StopRequested:
                raise _StopRequested(job.stopped_message(f"the test-set evaluation after epoch {job.epochs()[0]}")) from None
            job.record_test(*accuracy_and_loss(probabilities, data.y_test))

    def finish(self, status: Status, message: str, details: str = "") -> None:
        """Save (``on_end``), then publish the outcome: nobody sees 'finished' before the run is saved."""
        job = self.job
        self.turns.end_turn()
        job.ending()
        if job.on_end is not None:
            try:
                job.on_end(job, job.outcome(status, message, details))
            except Exception as error:  # saving must never lose the run in memory
                failures.log_failure(job.job_id, error, traceback.format_exc())
                message += " (It could not be saved on the server; the organiser can see why in the server log.)"
        job.end(status, message, details)


def _release_training_state(model) -> None:
    """Drop what only training needs (traced step functions, the cached validation iterator and its thread).

    An ended run stays in memory for its pages (prediction, Continue); in a room of 30 that is 30 models.
    Keras traces the functions again if the run is continued (a second or so), so a lone user keeps them.
    """
    if model is None:
        return
    for name in ("train_function", "test_function", "_eval_epoch_iterator"):  # used by fit alone, in this thread
        if hasattr(model, name):
            setattr(model, name, None)


def _strategy_scope(job: TrainingJob):
    return job.distribution.scope() if job.distribution is not None else contextlib.nullcontext()


def _start_fine_tuning(job: TrainingJob, phase2: TrainConfig) -> None:
    """Phase 2 begins: the top backbone layers unfrozen (batch norm never), compiled again at the lower rate."""
    from dcnn_core.design import backbones
    from dcnn_core.runtime import import_keras

    backbones.unfreeze_top(job.model, job.spec.backbone.fine_tune_layers)
    with _strategy_scope(job):
        job.model.compile(optimizer=build_optimizer(import_keras(), phase2), loss="sparse_categorical_crossentropy",
                          metrics=["accuracy"], steps_per_execution=_batches_per_call(job))  # fmt: skip
    job.fine_tuning_began(f"Fine-tuning the top {job.spec.backbone.fine_tune_layers} backbone layers…")


def _batches_per_call(job: TrainingJob) -> int:
    """About a second's work per call, so that Stop, turns and limits are seen within about a second (``pacing``)."""
    return pacing.of(job).batches_per_call
