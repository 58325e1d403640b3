"""Training jobs: ``fit`` in a background thread, owned by the core, drawn by the pages.

A ``TrainingJob`` runs one training in its own thread and records progress and
metrics; the UI only starts, stops and reads jobs (``job.snapshot()``), so a
page switch or a rerun never interrupts training. A ``JobRegistry`` — one per
process — caps how many trainings run at once; the rest wait in a queue.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from functools import cache

import numpy as np

from dcnn_core.datasets import Dataset
from dcnn_core.spec import ModelSpec

OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw")

QUEUED, RUNNING, FINISHED, STOPPED, FAILED, DIVERGED = "queued", "running", "finished", "stopped", "failed", "diverged"
ACTIVE_STATES = (QUEUED, RUNNING)
MAX_BATCH_POINTS = 4000  # per-batch history kept for the live curves; older points are thinned


@dataclass
class TrainConfig:
    """How to train: filled by the Train page's widgets."""

    optimizer: str = "adam"  # adam, sgd (with momentum 0.9), rmsprop or adamw
    learning_rate: float = 1e-3
    batch_size: int = 32
    epochs: int = 10
    validation_split: float = 0.1  # share of the training images held out to validate each epoch
    seed: int = 0

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Optimizer must be one of {', '.join(OPTIMIZERS)}.")
        if not (0 < self.learning_rate <= 100):
            raise ValueError("The learning rate must be above 0 and at most 100.")
        if not (1 <= self.batch_size <= 4096):
            raise ValueError("The batch size must be from 1 to 4096.")
        if not (1 <= self.epochs <= 500):
            raise ValueError("Epochs must be from 1 to 500.")
        if not (0 <= self.validation_split < 0.9):
            raise ValueError("The validation split must be from 0 to below 0.9.")


@dataclass(frozen=True)
class Progress:
    """A consistent copy of a job's state, safe to read from the UI thread."""

    job_id: str
    status: str
    message: str
    details: str
    epoch: int  # epochs completed
    epochs: int
    batch: int  # batches done in the current epoch
    batches_per_epoch: int
    elapsed_s: float
    eta_s: float | None
    queue_position: int | None
    history: dict[str, list[float]]  # per epoch: loss, accuracy, val_loss, val_accuracy
    batch_steps: list[float]  # fractional epoch of each recorded batch
    batch_loss: list[float]
    batch_accuracy: list[float]

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATES

    @property
    def fraction_done(self) -> float:
        total = self.epochs * max(1, self.batches_per_epoch)
        return min(1.0, (self.epoch * self.batches_per_epoch + self.batch) / total) if total else 0.0


class _StopRequested(Exception):
    """Raised inside fit to end training at once, without the epoch's validation pass."""


class _Diverged(Exception):
    pass


def _optimizer(keras, config: TrainConfig):
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=float(config.learning_rate), momentum=0.9)
    classes = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop, "adamw": keras.optimizers.AdamW}
    return classes[config.optimizer](learning_rate=float(config.learning_rate))


_seed_lock = threading.Lock()  # Keras's seed is process-wide: set it and build under one lock


def build_and_compile(spec: ModelSpec, dataset: Dataset, config: TrainConfig, max_parameters: int | None = None):
    """A compiled Keras model for ``spec`` on ``dataset``, initialised from ``config.seed``."""
    from dcnn_core.build import build_model
    from dcnn_core.runtime import import_keras

    keras = import_keras()
    with _seed_lock:
        keras.utils.set_random_seed(config.seed)
        model = build_model(spec, dataset.input_shape, dataset.num_classes, max_parameters)
    model.compile(optimizer=_optimizer(keras, config), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def split_train_validation(dataset: Dataset, fraction: float, seed: int):
    """A seeded split of the training images: ``(x_train, y_train, x_val, y_val)``."""
    order = np.random.default_rng(seed).permutation(len(dataset.x_train))
    cut = int(round(len(order) * (1 - fraction))) if fraction > 0 else len(order)
    train, val = np.sort(order[:cut]), np.sort(order[cut:])
    return dataset.x_train[train], dataset.y_train[train], dataset.x_train[val], dataset.y_train[val]


class TrainingJob:
    """One training run in a background thread.

    The worker thread writes; the UI reads ``snapshot()``. Nothing here touches Streamlit.
    """

    _ids = itertools.count(1)

    def __init__(self, spec: ModelSpec, dataset: Dataset, config: TrainConfig, owner: str = "", max_parameters: int | None = None):
        config.validate()
        self.job_id = f"run-{next(self._ids)}-{int(time.time())}"
        self.owner = owner
        self.spec = spec
        self.dataset = dataset
        self.config = config
        self.max_parameters = max_parameters
        self.model = None  # the Keras model; safe to use for prediction once the job has ended
        self.created_at = time.time()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._status = QUEUED
        self._message = "Waiting for a free training slot…"
        self._details = ""
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._epoch = 0
        self._batch = 0
        self._batches_per_epoch = 0
        self._history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
        self._batch_steps: list[float] = []
        self._batch_loss: list[float] = []
        self._batch_accuracy: list[float] = []
        self._thin = 1  # record one batch in every _thin, doubling when the history is full
        self.queue_position_fn = lambda: None  # set by the registry

    # --- control, from any thread ---------------------------------------------------------

    def request_stop(self) -> None:
        """Ask training to end after the current batch; the weights so far are kept."""
        self._stop.set()
        with self._lock:
            if self._status == RUNNING:
                self._message = "Stopping after this batch…"

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has ended; True if it did within ``timeout``."""
        return self._ended.wait(timeout)

    @property
    def status(self) -> str:
        with self._lock:
            return self._status

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def snapshot(self) -> Progress:
        # Ask the registry before taking our lock: it reads other jobs' locks too.
        queue_position = self.queue_position_fn() if self.status == QUEUED else None
        with self._lock:
            elapsed = 0.0
            if self._started_at is not None:
                elapsed = (self._ended_at or time.time()) - self._started_at
            done = self._epoch * self._batches_per_epoch + self._batch
            total = self.config.epochs * self._batches_per_epoch
            eta = None
            if self._status == RUNNING and done > 0 and total:
                eta = elapsed / done * (total - done)
            return Progress(
                job_id=self.job_id,
                status=self._status,
                message=self._message,
                details=self._details,
                epoch=self._epoch,
                epochs=self.config.epochs,
                batch=self._batch,
                batches_per_epoch=self._batches_per_epoch,
                elapsed_s=elapsed,
                eta_s=eta,
                queue_position=queue_position if self._status == QUEUED else None,
                history={key: list(values) for key, values in self._history.items()},
                batch_steps=list(self._batch_steps),
                batch_loss=list(self._batch_loss),
                batch_accuracy=list(self._batch_accuracy),
            )

    # --- the worker -------------------------------------------------------------------------

    def run(self, slots: threading.Semaphore | None = None) -> None:
        """Wait for a slot, then train; records the outcome instead of raising."""
        acquired = False
        try:
            if slots is not None:
                while not (acquired := slots.acquire(timeout=0.2)):
                    if self._stop.is_set():
                        self._finish(STOPPED, "Cancelled before it started.")
                        return
            if self._stop.is_set():
                self._finish(STOPPED, "Cancelled before it started.")
                return
            self._train()
        except _StopRequested:
            self._finish(STOPPED, self._stopped_message())
        except _Diverged as error:
            self._finish(DIVERGED, str(error))
        except Exception as error:  # any failure ends this job only; the server keeps serving
            self._finish(FAILED, _one_line(error), traceback.format_exc())
        finally:
            if acquired:
                slots.release()

    def _train(self) -> None:
        with self._lock:
            self._status, self._message = RUNNING, "Building the model…"
            self._started_at = time.time()
        model = build_and_compile(self.spec, self.dataset, self.config, self.max_parameters)
        self.model = model
        x_train, y_train, x_val, y_val = split_train_validation(self.dataset, self.config.validation_split, self.config.seed)
        if len(x_train) == 0:
            raise ValueError("No training images are left after the validation split.")
        with self._lock:
            self._batches_per_epoch = math.ceil(len(x_train) / self.config.batch_size)
            self._message = "Training…"
        model.fit(
            x_train,
            y_train,
            batch_size=self.config.batch_size,
            epochs=self.config.epochs,
            validation_data=(x_val, y_val) if len(x_val) else None,
            callbacks=[_ProgressCallback(self)],
            verbose=0,
        )
        self._finish(FINISHED, f"Finished {self.config.epochs} epochs.")

    def _stopped_message(self) -> str:
        with self._lock:
            return f"Stopped by you at epoch {self._epoch + 1}, batch {self._batch}. The model trained so far is kept."

    def _finish(self, status: str, message: str, details: str = "") -> None:
        with self._lock:
            self._status, self._message, self._details = status, message, details
            self._ended_at = time.time()
        self._ended.set()

    # --- called by the Keras callback, on the worker thread ----------------------------------

    def _on_batch(self, batch: int, logs: dict) -> None:
        loss = float(logs.get("loss", math.nan))
        with self._lock:
            self._batch = batch + 1
            if (batch % self._thin) == 0:
                self._batch_steps.append(self._epoch + self._batch / max(1, self._batches_per_epoch))
                self._batch_loss.append(loss)
                self._batch_accuracy.append(float(logs.get("accuracy", math.nan)))
                if len(self._batch_steps) >= MAX_BATCH_POINTS:
                    self._batch_steps = self._batch_steps[::2]
                    self._batch_loss = self._batch_loss[::2]
                    self._batch_accuracy = self._batch_accuracy[::2]
                    self._thin *= 2
        if not math.isfinite(loss):
            raise _Diverged(
                f"Training stopped at epoch {self._epoch + 1}, batch {batch + 1}: the loss became {loss}. "
                "The learning rate is probably too high — lower it (e.g. ÷10) and train again."
            )
        if self._stop.is_set():
            raise _StopRequested()

    def _on_epoch(self, epoch: int, logs: dict) -> None:
        with self._lock:
            self._epoch = epoch + 1
            self._batch = 0
            for key in self._history:
                self._history[key].append(float(logs.get(key, math.nan)))


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first[:300]}" if first else type(error).__name__


@cache
def _callback_class():
    from dcnn_core.runtime import import_keras

    keras = import_keras()

    class ProgressCallback(keras.callbacks.Callback):
        def __init__(self, job: TrainingJob):
            super().__init__()
            self.job = job

        def on_train_batch_end(self, batch, logs=None):
            self.job._on_batch(batch, logs or {})

        def on_epoch_end(self, epoch, logs=None):
            self.job._on_epoch(epoch, logs or {})

    return ProgressCallback


def _ProgressCallback(job: TrainingJob):
    return _callback_class()(job)


class JobRegistry:
    """All training jobs of this process, with a cap on how many run at once."""

    def __init__(self, max_concurrent: int = 2):
        self.max_concurrent = max_concurrent
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._lock = threading.Lock()
        self._jobs: dict[str, TrainingJob] = {}

    def submit(self, job: TrainingJob) -> TrainingJob:
        """Start ``job`` in a daemon thread; it waits in the queue while all slots are busy."""
        job.queue_position_fn = lambda: self.queue_position(job)
        with self._lock:
            self._jobs[job.job_id] = job
        threading.Thread(target=job.run, args=(self._slots,), name=f"train-{job.job_id}", daemon=True).start()
        return job

    def get(self, job_id: str) -> TrainingJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self, owner: str | None = None) -> list[TrainingJob]:
        with self._lock:
            jobs = list(self._jobs.values())
        return [job for job in jobs if owner is None or job.owner == owner]

    def queue_position(self, job: TrainingJob) -> int | None:
        """1 for the next job to start, or None when ``job`` is not waiting."""
        queued = sorted((j for j in self.jobs() if j.status == QUEUED), key=lambda j: j.created_at)
        for position, other in enumerate(queued, start=1):
            if other is job:
                return position
        return None

    def running_count(self) -> int:
        return sum(1 for job in self.jobs() if job.status == RUNNING)

    def remove(self, job_id: str) -> None:
        """Forget an ended job (its model is released)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job.ended:
                del self._jobs[job_id]


def config_dict(config: TrainConfig) -> dict:
    return asdict(config)
