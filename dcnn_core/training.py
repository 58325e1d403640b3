"""Training runs: ``fit`` in a background thread, owned by the core, drawn by the pages.

The pieces, each with one job:

- ``RunDescription`` — what is trained, on what, for whom (frozen; made once, never changed);
- ``dcnn_core.progress.ProgressLog`` — the metrics as they arrive (no Keras);
- ``TrainingJob`` — one run's state and controls (start, stop, continue, snapshot), safe from any thread;
- ``_Lifecycle`` — what the worker thread does: build, fit, evaluate, finish;
- ``dcnn_core.jobs.JobRegistry`` — every run of the process and the turns at the processor.

The UI only starts, stops and reads jobs (``job.snapshot()``), so a page switch or a rerun never
interrupts training. Nothing here touches Streamlit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import secrets
import threading
import time
import traceback
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from dcnn_core.datasets import Dataset
from dcnn_core.progress import ACTIVE_STATES, ENDED_STATES, HISTORY_KEYS, MAX_BATCH_POINTS, Progress, ProgressLog, Status
from dcnn_core.scheduler import FairScheduler
from dcnn_core.spec import ModelSpec
from dcnn_core.training_config import OPTIMIZERS, Augmentation, TrainConfig, build_optimizer, scheduled_rate

__all__ = [
    "OPTIMIZERS", "Augmentation", "TrainConfig", "TrainingJob", "RunDescription", "RunLimits", "Progress", "Status",
    "ACTIVE_STATES", "ENDED_STATES", "HISTORY_KEYS", "MAX_BATCH_POINTS", "build_and_compile", "split_indices",
]  # fmt: skip

QUEUED, RUNNING, FINISHED, STOPPED, FAILED, DIVERGED = (Status.QUEUED, Status.RUNNING, Status.FINISHED, Status.STOPPED,
                                                        Status.FAILED, Status.DIVERGED)  # fmt: skip
DIVERGED_LOSS = 1e6  # cross-entropy starts near ln(classes); a mean loss this big means the weights blew up
WAITING = "Waiting for its first turn at the processor…"
# Batches Keras runs per call into TensorFlow (``steps_per_execution``): the same results, less Python per batch —
# which matters in a room, where every training's loop shares the interpreter with the web server. Curves,
# turns and Stop then move every few batches.
BATCHES_PER_CALL = 4


@dataclass(frozen=True)
class RunLimits:
    """Bounds on one run's work, set by the server when a room shares it (None: no bound)."""

    images_per_epoch: int | None = None  # a fresh random subset of this many training images each epoch
    max_compute_s: float | None = None  # stop (model kept) after this much training time

    def describe(self) -> str:
        parts = []
        if self.images_per_epoch:
            parts.append(f"at most {self.images_per_epoch:,} training images per epoch")
        if self.max_compute_s:
            parts.append(f"at most {self.max_compute_s / 60:g} min of training per run")
        return "; ".join(parts)


@dataclass(frozen=True)
class RunDescription:
    """What a run is: made once, before it starts, never changed."""

    spec: ModelSpec
    config: TrainConfig
    dataset_ref: dict  # {"key", "options", "title"}: enough to load the data again
    owner: str = ""
    run_id: str = field(default_factory=lambda: secrets.token_hex(6))  # unguessable: the id in a URL reattaches to it
    strategy: str = "default"  # how it was trained, in words (e.g. "MirroredStrategy on 2 GPUs")
    created_at: float = field(default_factory=time.time)
    max_parameters: int | None = None
    limits: RunLimits = RunLimits()


class _StopRequested(Exception):
    """Raised inside fit to end training at once, without the epoch's validation pass."""


class _Diverged(Exception):
    pass


_seed_lock = threading.Lock()  # Keras's seed is process-wide: set it and build under one lock


def build_and_compile(spec: ModelSpec, dataset: Dataset, config: TrainConfig, max_parameters: int | None = None,
                      batches_per_call: int = 1):  # fmt: skip
    """A compiled Keras model for ``spec`` on ``dataset``, initialised from ``config.seed``."""
    from dcnn_core.build import build_model
    from dcnn_core.runtime import import_keras

    keras = import_keras()
    mixed = keras.mixed_precision.global_policy().name.startswith("mixed_")  # set per thread, by the headless CLI
    with _seed_lock:
        keras.utils.set_random_seed(config.seed)
        model = build_model(spec, dataset.input_shape, dataset.num_classes, max_parameters, float32_output=mixed)
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


class TrainingJob:
    """One run: its state and its controls, safe to call from any thread. The worker is ``_Lifecycle``."""

    def __init__(self, spec: ModelSpec | RunDescription, dataset: Dataset, config: TrainConfig | None = None, owner: str = "",
                 max_parameters: int | None = None, *, distribution=None):  # fmt: skip
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
        self._log = ProgressLog(target_epochs=description.config.epochs + _fine_tune_epochs(description.spec))
        self._elapsed_before = 0.0  # training time of earlier sessions of a continued run
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._test: tuple[float, float] | None = None
        self._had_turn = False

    # The description's fields, read-only.
    job_id = property(lambda self: self.description.run_id)
    owner = property(lambda self: self.description.owner)
    spec = property(lambda self: self.description.spec)
    config = property(lambda self: self.description.config)
    dataset_ref = property(lambda self: self.description.dataset_ref)
    strategy = property(lambda self: self.description.strategy)
    created_at = property(lambda self: self.description.created_at)

    @classmethod
    def restored(cls, description: RunDescription, dataset: Dataset, model, outcome: dict) -> TrainingJob:
        """An ended run read back from disk: ``outcome`` has status, message, history, elapsed_s, best_epoch, test."""
        job = cls(description, dataset)
        job.model = model
        job._status, job._message = Status(outcome["status"]), outcome.get("message", "")
        job._log = ProgressLog.restored(outcome.get("history", {}), outcome.get("best_epoch"))
        job._elapsed_before = float(outcome.get("elapsed_s", 0.0))
        job._test = outcome.get("test")
        job._ended.set()
        return job

    def request_stop(self, reason: str = "") -> None:
        """Ask training to end after the batches in progress (at most BATCHES_PER_CALL); the weights so far are kept."""
        self._stop_reason = reason
        self._stop.set()
        with self._lock:
            if self._status == RUNNING:
                self._message = "Stopping after the batches in progress…"

    def prepare_continue(self, extra_epochs: int) -> None:
        """Make an ended run ready to train ``extra_epochs`` more, from its current weights (callers hold the registry's lock)."""
        if not self.ended or self.model is None:
            raise ValueError("Only a finished or stopped run with a model can be continued.")
        if self.status in (FAILED, DIVERGED):
            raise ValueError("A failed or diverged run cannot be continued; start a new one.")
        if not 1 <= extra_epochs <= 500:
            raise ValueError("Continue for 1 to 500 more epochs.")
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
    def display_name(self) -> str:
        return self.spec.name

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

    def _share(self) -> float:
        scheduler = self.scheduler
        return 1.0 if scheduler is None else scheduler.share(scheduler.computing_count() + scheduler.waiting_count())

    def run(self, scheduler: FairScheduler | None = None) -> None:
        """The worker thread's body: wait for turns, train, record the outcome instead of raising."""
        if scheduler is not None:
            self.scheduler = scheduler
        _Lifecycle(self).run()

    def _set(self, **changes) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self, f"_{name}", value)
            self._log.version += 1


class _Turns:
    """A job's turns at the processor: wait for one, hand it on when it is over, count the time computed."""

    def __init__(self, job: TrainingJob):
        self.job = job
        self.scheduler = job.scheduler or FairScheduler(slots=1, slice_s=math.inf)  # alone: one endless turn
        self.turn_began: float | None = None

    def take_turn(self, first: bool = False) -> bool:
        job = self.job
        if not self.scheduler.acquire(job.job_id, cancelled=job._stop.is_set, first=first):
            return False
        self.turn_began = time.monotonic()
        if first:
            job._had_turn = True
            job._set(status=RUNNING, message="Building the model…" if job.model is None else "Continuing…",
                     started_at=job._started_at or time.time())  # fmt: skip
        return True

    def compute_s(self) -> float:
        """Seconds this training session has computed, the current turn included."""
        with self.job._lock:
            done = self.job._log._computing_s
        return done + (time.monotonic() - self.turn_began if self.turn_began is not None else 0.0)

    def end_turn(self) -> None:
        if self.turn_began is not None:
            self.scheduler.release(self.job.job_id)
            with self.job._lock:
                self.job._log.add_compute_time(time.monotonic() - self.turn_began)
            self.turn_began = None

    def between_batches(self) -> None:
        """Hand the processor on when the turn is over; stop when asked or out of time."""
        job = self.job
        limit = job.description.limits.max_compute_s
        if limit and self.compute_s() > limit:
            job.request_stop(f"Stopped at the room's limit of {limit / 60:g} min of training per run")
        if job._stop.is_set():
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
            if not self.turns.take_turn(first=not job._had_turn):
                self.finish(STOPPED, "Cancelled before it started." if job.model is None else _stopped_message(self.job))
                return
            self.train()
        except _StopRequested:
            self.finish(STOPPED, _stopped_message(self.job))
        except _Diverged as error:
            self.finish(DIVERGED, str(error))
        except Exception as error:  # any failure ends this job only; the server keeps serving
            self.finish(FAILED, _one_line(error), traceback.format_exc())
        finally:
            self.turns.end_turn()
            if job.description.limits != RunLimits():  # a shared server: many ended runs stay in memory
                _release_training_state(job.model)

    # --- the work -----------------------------------------------------------------------------

    def train(self) -> None:
        from dcnn_core import pipeline

        job, config, data = self.job, self.job.config, self.job.dataset
        if job.model is None:
            # Variables made in a strategy's scope are mirrored; fit then splits each (global) batch across replicas.
            with job.distribution.scope() if job.distribution is not None else contextlib.nullcontext():
                job.model = build_and_compile(job.spec, data, config, job.description.max_parameters, _batches_per_call(job))
        train, val = split_indices(len(data.x_train), config.validation_split, config.seed)
        if len(train) == 0:
            raise ValueError("No training images are left after the validation split.")
        per_epoch = job.description.limits.images_per_epoch
        if per_epoch and len(val) > per_epoch // 4:
            val = val[: max(1, per_epoch // 4)]  # validation in proportion to what an epoch trains on
        with job._lock:
            job._log.begin_session(pipeline.batches_per_epoch(len(train), config.batch_size, per_epoch))
            job._message = "Training…"
        self.fit(train, val, per_epoch)
        self.evaluate_test()
        log = job._log
        if log.epoch < log.target_epochs:
            self.finish(FINISHED, f"Stopped early at epoch {log.epoch}: validation loss stopped improving. "
                                  f"The weights of its best epoch ({log.best_epoch}) are restored.")  # fmt: skip
        else:
            self.finish(FINISHED, f"Finished {log.epoch} epochs.")

    def fit(self, train: np.ndarray, val: np.ndarray, per_epoch: int | None) -> None:
        """Train to the target epoch: in one phase, or — with a pretrained backbone — the head first, then fine-tuning."""
        job, config, log = self.job, self.job.config, self.job._log
        if not _fine_tune_epochs(job.spec):
            self.fit_phase(config, log.target_epochs, 0, train, val, per_epoch)
        else:
            from dcnn_core import backbones

            if log.epoch < config.epochs and log.fine_tune_from is None:
                self.fit_phase(config, config.epochs, 0, train, val, per_epoch)  # phase 1: the backbone frozen
                with job._lock:  # ended early (early stopping): fine-tuning still gets all its epochs
                    log.target_epochs = min(log.target_epochs, log.epoch + job.spec.backbone.fine_tune_epochs)
            phase2 = backbones.fine_tune_config(config, job.spec.backbone)
            if log.fine_tune_from is None:  # phase 2: the top layers unfrozen, batch norm kept in inference mode
                _start_fine_tuning(job, phase2)
            self.fit_phase(phase2, log.target_epochs, log.fine_tune_from, train, val, per_epoch)
        if job.best_weights is not None and (config.early_stopping or log.epoch < log.target_epochs):
            job.model.set_weights(job.best_weights)

    def fit_phase(self, config: TrainConfig, end: int, first_epoch: int, train, val, per_epoch: int | None) -> None:
        """``fit`` from the current epoch to ``end`` with ``config``'s schedule (counted from ``first_epoch``)."""
        from dcnn_core import pipeline
        from dcnn_core.runtime import import_keras

        keras, job, data = import_keras(), self.job, self.job.dataset
        if job._log.epoch >= end:
            return
        callbacks = [_callback_class()(self.recorder)]
        if config.schedule == "plateau":
            callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=config.step_factor, patience=config.patience))
        elif config.schedule != "constant":
            callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch, _rate: scheduled_rate(config, epoch - first_epoch)))
        validation = pipeline.evaluation_dataset(data.x_train, data.y_train, max(256, config.batch_size), val) if len(val) else None
        weights = pipeline.balanced_class_weights(data.y_train[train], data.num_classes) if config.class_weights else None
        job.model.fit(
            pipeline.training_dataset(data.x_train, data.y_train, train, config, per_epoch),
            epochs=end, initial_epoch=job._log.epoch, validation_data=validation,
            class_weight=weights, callbacks=callbacks, shuffle=False, verbose=0,  # the pipeline shuffles, seeded
        )  # fmt: skip

    def evaluate_test(self) -> None:
        from dcnn_core.evaluation import accuracy_and_loss, predict_probabilities

        data = self.job.dataset
        if len(data.x_test):
            self.job._set(test=accuracy_and_loss(predict_probabilities(self.job.model, data.x_test), data.y_test))

    def finish(self, status: Status, message: str, details: str = "") -> None:
        """Save (``on_end``), then publish the outcome: nobody sees 'finished' before the run is saved."""
        job = self.job
        self.turns.end_turn()
        with job._lock:
            job._ended_at = time.time()
            if job._status == RUNNING:
                job._message = "Saving the run…"
        if job.on_end is not None:
            final = dataclasses.replace(job.snapshot(), status=status, message=message, details=details)
            try:
                job.on_end(job, final)
            except Exception as error:  # saving must never lose the run in memory
                message += f" (It could not be saved to disk: {_one_line(error)})"
        job._set(status=status, message=message, details=details)
        job._ended.set()


class _Recorder:
    """What the Keras callback reports, on the worker thread: batches and epochs into the log; divergence; early stopping."""

    def __init__(self, job: TrainingJob, turns: _Turns):
        self.job, self.turns = job, turns
        self.epoch_compute = 0.0

    def on_batch(self, batch: int, logs: dict) -> None:
        job = self.job
        loss = float(logs.get("loss", math.nan))
        with job._lock:
            job._log.record_batch(batch, loss, float(logs.get("accuracy", math.nan)))
            epoch = job._log.epoch
        if not math.isfinite(loss) or loss > DIVERGED_LOSS:
            what = f"became {loss}" if not math.isfinite(loss) else f"exploded to {loss:.3g}"
            raise _Diverged(
                f"Training stopped at epoch {epoch + 1}, batch {batch + 1}: the loss {what}. "
                "The learning rate is probably too high — lower it (e.g. ÷10) and train again."
            )
        self.turns.between_batches()

    def on_epoch_begin(self) -> None:
        self.epoch_compute = self.turns.compute_s()

    def on_epoch(self, epoch: int, logs: dict, learning_rate: float) -> bool:
        """Record an epoch; True when early stopping says to stop."""
        job = self.job
        seconds = self.turns.compute_s() - self.epoch_compute
        with job._lock:
            images = job._log.batches_per_epoch * job.config.batch_size
            improved = job._log.record_epoch(epoch, dict(logs, learning_rate=learning_rate, images_per_s=images / max(seconds, 1e-9)))
            since_best = job._log.epochs_since_best()
        if improved:
            job.best_weights = job.model.get_weights()  # numpy copies
        return job.config.early_stopping and since_best is not None and since_best >= job.config.patience


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


def _start_fine_tuning(job: TrainingJob, phase2: TrainConfig) -> None:
    """Phase 2 begins: the top backbone layers unfrozen (batch norm never), compiled again at the lower rate."""
    from dcnn_core import backbones
    from dcnn_core.runtime import import_keras

    backbones.unfreeze_top(job.model, job.spec.backbone.fine_tune_layers)
    with job.distribution.scope() if job.distribution is not None else contextlib.nullcontext():
        job.model.compile(optimizer=build_optimizer(import_keras(), phase2), loss="sparse_categorical_crossentropy",
                          metrics=["accuracy"], steps_per_execution=_batches_per_call(job))  # fmt: skip
    with job._lock:
        job._log.fine_tune_from = job._log.epoch
        job._message = f"Fine-tuning the top {job.spec.backbone.fine_tune_layers} backbone layers…"


def _stopped_message(job: TrainingJob) -> str:
    with job._lock:
        where = f"epoch {job._log.epoch + 1}, batch {job._log.batch}"
    if job._stop_reason:
        return f"{job._stop_reason} (at {where}). The model trained so far is kept."
    return f"Stopped by you at {where}. The model trained so far is kept."


def _batches_per_call(job: TrainingJob) -> int:
    """Several batches per call, except for slow pretrained backbones and distributed training (its collectives go per step)."""
    return 1 if job.distribution is not None or getattr(job.spec, "backbone", None) is not None else BATCHES_PER_CALL


def _fine_tune_epochs(spec: ModelSpec) -> int:
    """Epochs of phase 2 (fine-tuning a pretrained backbone), 0 for a design trained from scratch."""
    backbone = getattr(spec, "backbone", None)
    return backbone.fine_tune_epochs if backbone is not None and backbone.fine_tune_layers > 0 else 0


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first[:300]}" if first else type(error).__name__


@cache
def _callback_class():
    from dcnn_core.runtime import import_keras

    keras = import_keras()

    class ProgressCallback(keras.callbacks.Callback):
        """Feeds a job's progress; takes turns; stops training on request, divergence or early stopping."""

        def __init__(self, recorder: _Recorder):
            super().__init__()
            self.recorder = recorder

        def on_epoch_begin(self, epoch, logs=None):
            self.recorder.on_epoch_begin()

        def on_train_batch_end(self, batch, logs=None):
            self.recorder.on_batch(batch, logs or {})

        def on_test_batch_end(self, batch, logs=None):
            self.recorder.turns.between_batches()

        def on_epoch_end(self, epoch, logs=None):
            rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            if self.recorder.on_epoch(epoch, logs or {}, rate):
                self.model.stop_training = True

    return ProgressCallback
