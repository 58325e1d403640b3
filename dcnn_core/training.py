"""Training jobs: ``fit`` in a background thread, owned by the core, drawn by the pages.

A ``TrainingJob`` runs one training in its own thread and records progress and
metrics; the UI only starts, stops and reads jobs (``job.snapshot()``), so a
page switch or a rerun never interrupts training. A ``JobRegistry`` — one per
process — caps how many trainings run at once; the rest wait in a queue.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import secrets
import threading
import time
import traceback
from dataclasses import dataclass
from functools import cache

import numpy as np

from dcnn_core.datasets import Dataset
from dcnn_core.spec import ModelSpec
from dcnn_core.training_config import OPTIMIZERS, Augmentation, TrainConfig, scheduled_rate

__all__ = ["OPTIMIZERS", "Augmentation", "TrainConfig", "TrainingJob", "JobRegistry", "Progress"]

QUEUED, RUNNING, FINISHED, STOPPED, FAILED, DIVERGED = "queued", "running", "finished", "stopped", "failed", "diverged"
ACTIVE_STATES = (QUEUED, RUNNING)
ENDED_STATES = (FINISHED, STOPPED, FAILED, DIVERGED)
MAX_BATCH_POINTS = 4000  # per-batch history kept for the live curves; older points are thinned
DIVERGED_LOSS = 1e6  # cross-entropy starts near ln(classes); a mean loss this big means the weights blew up
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "images_per_s")


@dataclass(frozen=True)
class Progress:
    """A consistent copy of a job's state, safe to read from the UI thread."""

    job_id: str
    status: str
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

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATES

    @property
    def fraction_done(self) -> float:
        total = self.epochs * max(1, self.batches_per_epoch)
        return min(1.0, (self.epoch * self.batches_per_epoch + self.batch) / total) if total else 0.0

    @property
    def best_val_accuracy(self) -> float | None:
        values = [v for v in self.history.get("val_accuracy", []) if math.isfinite(v)]
        return max(values) if values else None


class _StopRequested(Exception):
    """Raised inside fit to end training at once, without the epoch's validation pass."""


class _Diverged(Exception):
    pass


def _optimizer(keras, config: TrainConfig):
    rate = float(config.learning_rate)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=rate, momentum=0.9)
    classes = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop, "adamw": keras.optimizers.AdamW}
    return classes[config.optimizer](learning_rate=rate)


_seed_lock = threading.Lock()  # Keras's seed is process-wide: set it and build under one lock


def build_and_compile(spec: ModelSpec, dataset: Dataset, config: TrainConfig, max_parameters: int | None = None):
    """A compiled Keras model for ``spec`` on ``dataset``, initialised from ``config.seed``."""
    from dcnn_core.build import build_model
    from dcnn_core.runtime import import_keras

    keras = import_keras()
    mixed = keras.mixed_precision.global_policy().name.startswith("mixed_")  # set per thread, by the headless CLI
    with _seed_lock:
        keras.utils.set_random_seed(config.seed)
        model = build_model(spec, dataset.input_shape, dataset.num_classes, max_parameters, float32_output=mixed)
    model.compile(optimizer=_optimizer(keras, config), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def split_train_validation(dataset: Dataset, fraction: float, seed: int):
    """A seeded split of the training images: ``(x_train, y_train, x_val, y_val)``."""
    order = np.random.default_rng(seed).permutation(len(dataset.x_train))
    cut = int(round(len(order) * (1 - fraction))) if fraction > 0 else len(order)
    train, val = np.sort(order[:cut]), np.sort(order[cut:])
    return dataset.x_train[train], dataset.y_train[train], dataset.x_train[val], dataset.y_train[val]


class TrainingJob:
    """One training run in a background thread; it can be continued for more epochs.

    The worker thread writes; the UI reads ``snapshot()``. Nothing here touches Streamlit.
    """

    def __init__(self, spec: ModelSpec, dataset: Dataset, config: TrainConfig, owner: str = "", max_parameters: int | None = None):
        config.validate()
        self.job_id = secrets.token_hex(6)  # unguessable: the id in a URL is what reattaches to a run
        self.owner = owner
        self.spec = spec
        self.dataset = dataset
        self.dataset_ref: dict = {"key": dataset.key, "title": dataset.title}  # set fully by the page
        self.config = config
        self.max_parameters = max_parameters
        self.model = None  # the Keras model; safe to use for prediction once the job has ended
        self.best_weights: list | None = None  # weights at the best validation loss
        self.created_at = time.time()
        self.last_seen = time.time()  # last time its owner's page looked at it
        self.on_end = None  # called with (job, final Progress) when a training ends, before it shows as ended
        self.distribution = None  # a tf.distribute.Strategy to build and train under (headless CLI); None: TF's default
        self.strategy = "default"  # how it was trained, in words (e.g. "MirroredStrategy on 2 GPUs"); saved with the run
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._status = QUEUED
        self._message = "Waiting for a free training slot…"
        self._details = ""
        self._started_at: float | None = None
        self._elapsed_before = 0.0  # training time of earlier sessions of a continued run
        self._ended_at: float | None = None
        self._epoch = 0
        self._target_epochs = config.epochs
        self._batch = 0
        self._batches_per_epoch = 0
        self._history: dict[str, list[float]] = {key: [] for key in HISTORY_KEYS}
        self._batch_steps: list[float] = []
        self._batch_loss: list[float] = []
        self._batch_accuracy: list[float] = []
        self._thin = 1  # record one batch in every _thin, doubling when the history is full
        self._epoch_started = time.time()
        self._test: tuple[float, float] | None = None
        self._best_epoch: int | None = None
        self._session_start_step = 0  # global batch index where this training session began
        self._stop_reason = ""
        self.queue_position_fn = lambda: None  # set by the registry

    # --- control, from any thread ---------------------------------------------------------

    def request_stop(self, reason: str = "") -> None:
        """Ask training to end after the current batch; the weights so far are kept."""
        self._stop_reason = reason
        self._stop.set()
        with self._lock:
            if self._status == RUNNING:
                self._message = "Stopping after this batch…"

    def prepare_continue(self, extra_epochs: int) -> None:
        """Make an ended run ready to train ``extra_epochs`` more, from its current weights."""
        if not self.ended or self.model is None:
            raise ValueError("Only a finished or stopped run with a model can be continued.")
        if self.status in (FAILED, DIVERGED):
            raise ValueError("A failed or diverged run cannot be continued; start a new one.")
        if not 1 <= extra_epochs <= 500:
            raise ValueError("Continue for 1 to 500 more epochs.")
        with self._lock:
            self._target_epochs = self._epoch + extra_epochs
            self._status, self._message, self._details = QUEUED, "Waiting for a free training slot…", ""
            if self._started_at is not None:
                self._elapsed_before += (self._ended_at or time.time()) - self._started_at
            self._started_at = self._ended_at = None
            self._test = None
        self._stop.clear()
        self._ended.clear()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has ended; True if it did within ``timeout``."""
        return self._ended.wait(timeout)

    def touch(self) -> None:
        self.last_seen = time.time()

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
            elapsed = self._elapsed_before
            if self._started_at is not None:
                elapsed += (self._ended_at or time.time()) - self._started_at
            done = self._epoch * self._batches_per_epoch + self._batch
            total = self._target_epochs * self._batches_per_epoch
            eta = None
            if self._status == RUNNING and self._started_at is not None and done > 0 and total:
                session_done = done - self._session_start_step
                rate = (time.time() - self._started_at) / max(1, session_done)
                eta = rate * (total - done)
            return Progress(
                job_id=self.job_id,
                status=self._status,
                message=self._message,
                details=self._details,
                epoch=self._epoch,
                epochs=self._target_epochs,
                batch=self._batch,
                batches_per_epoch=self._batches_per_epoch,
                elapsed_s=elapsed,
                eta_s=eta,
                queue_position=queue_position if self._status == QUEUED else None,
                history={key: list(values) for key, values in self._history.items()},
                batch_steps=list(self._batch_steps),
                batch_loss=list(self._batch_loss),
                batch_accuracy=list(self._batch_accuracy),
                test_accuracy=self._test[0] if self._test else None,
                test_loss=self._test[1] if self._test else None,
                best_epoch=self._best_epoch,
            )

    def _restore(self, record) -> None:
        """Take the outcome of a run saved on disk (see ``dcnn_core.runs.restore_job``)."""
        with self._lock:
            self._status, self._message = record.status, record.message
            self._history = {key: list(record.history.get(key, [])) for key in HISTORY_KEYS}
            self._epoch = self._target_epochs = len(self._history["loss"])
            self._elapsed_before = record.elapsed_s
            self._best_epoch = record.best_epoch
            if record.test_accuracy is not None:
                self._test = (record.test_accuracy, record.test_loss)
            self._ended_at = None
        self._ended.set()

    # --- the worker -------------------------------------------------------------------------

    def run(self, slots: threading.Semaphore | None = None) -> None:
        """Wait for a slot, then train; records the outcome instead of raising."""
        acquired = False
        try:
            if slots is not None:
                while not (acquired := slots.acquire(timeout=0.2)):
                    if self._stop.is_set():
                        break
            if self._stop.is_set() and self._started_at is None and self.model is None:
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
            self._status, self._message = RUNNING, "Building the model…" if self.model is None else "Continuing…"
            self._started_at = time.time()
        if self.model is None:
            # Variables made in a strategy's scope are mirrored; fit then splits each (global) batch across replicas.
            with self.distribution.scope() if self.distribution is not None else contextlib.nullcontext():
                self.model = build_and_compile(self.spec, self.dataset, self.config, self.max_parameters)
        x_train, y_train, x_val, y_val = split_train_validation(self.dataset, self.config.validation_split, self.config.seed)
        if len(x_train) == 0:
            raise ValueError("No training images are left after the validation split.")
        with self._lock:
            self._batches_per_epoch = math.ceil(len(x_train) / self.config.batch_size)
            self._session_start_step = self._epoch * self._batches_per_epoch
            self._message = "Training…"
        self._fit(x_train, y_train, x_val, y_val)
        self._evaluate_test()
        with self._lock:
            stopped_early = self._epoch < self._target_epochs
            best = self._best_epoch
        if stopped_early:
            self._finish(FINISHED, f"Stopped early at epoch {self._epoch}: validation loss stopped improving. "
                                   f"The weights of its best epoch ({best}) are restored.")  # fmt: skip
        else:
            self._finish(FINISHED, f"Finished {self._epoch} epochs.")

    def _fit(self, x_train, y_train, x_val, y_val) -> None:
        from dcnn_core import pipeline
        from dcnn_core.runtime import import_keras

        keras = import_keras()
        config = self.config
        callbacks = [_callback_class()(self)]
        if config.schedule == "plateau":
            callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=config.step_factor, patience=config.patience))
        elif config.schedule != "constant":
            callbacks.append(keras.callbacks.LearningRateScheduler(lambda epoch, _rate: scheduled_rate(config, epoch)))
        validation = pipeline.evaluation_dataset(x_val, y_val, max(256, config.batch_size)) if len(x_val) else None
        self.model.fit(
            pipeline.training_dataset(x_train, y_train, config),
            epochs=self._target_epochs,
            initial_epoch=self._epoch,
            validation_data=validation,
            class_weight=pipeline.balanced_class_weights(y_train, self.dataset.num_classes) if config.class_weights else None,
            callbacks=callbacks,
            shuffle=False,  # the tf.data pipeline shuffles, seeded
            verbose=0,
        )
        if self.best_weights is not None and (config.early_stopping or self._epoch < self._target_epochs):
            self.model.set_weights(self.best_weights)

    def _evaluate_test(self) -> None:
        from dcnn_core.evaluation import accuracy_and_loss, predict_probabilities

        data = self.dataset
        if len(data.x_test) == 0:
            return
        result = accuracy_and_loss(predict_probabilities(self.model, data.x_test), data.y_test)
        with self._lock:
            self._test = result

    def _stopped_message(self) -> str:
        reason = getattr(self, "_stop_reason", "")
        with self._lock:
            where = f"epoch {self._epoch + 1}, batch {self._batch}"
        if reason:
            return f"{reason} (at {where}). The model trained so far is kept."
        return f"Stopped by you at {where}. The model trained so far is kept."

    def _finish(self, status: str, message: str, details: str = "") -> None:
        """Save (``on_end``), then publish the outcome: nobody sees 'finished' before the run is saved."""
        with self._lock:
            self._ended_at = time.time()
            if self._status == RUNNING:
                self._message = "Saving the run…"
        if self.on_end is not None:
            final = dataclasses.replace(self.snapshot(), status=status, message=message, details=details)
            try:
                self.on_end(self, final)
            except Exception as error:  # saving must never lose the run in memory
                message += f" (It could not be saved to disk: {_one_line(error)})"
        with self._lock:
            self._status, self._message, self._details = status, message, details
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
        if not math.isfinite(loss) or loss > DIVERGED_LOSS:
            what = f"became {loss}" if not math.isfinite(loss) else f"exploded to {loss:.3g}"
            raise _Diverged(
                f"Training stopped at epoch {self._epoch + 1}, batch {batch + 1}: the loss {what}. "
                "The learning rate is probably too high — lower it (e.g. ÷10) and train again."
            )
        if self._stop.is_set():
            raise _StopRequested()

    def _on_epoch_begin(self) -> None:
        self._epoch_started = time.time()

    def _on_epoch(self, epoch: int, logs: dict, learning_rate: float) -> bool:
        """Record an epoch; True when early stopping says to stop."""
        seconds = max(1e-9, time.time() - self._epoch_started)
        images = len(self.dataset.x_train) * (1 - self.config.validation_split)
        logs = dict(logs, learning_rate=learning_rate, images_per_s=images / seconds)
        val_loss = float(logs.get("val_loss", math.nan))
        with self._lock:
            self._epoch = epoch + 1
            self._batch = 0
            for key in HISTORY_KEYS:
                self._history[key].append(float(logs.get(key, math.nan)))
            previous = [v for v in self._history["val_loss"][:-1] if math.isfinite(v)]
            improved = math.isfinite(val_loss) and (not previous or val_loss < min(previous))
            if improved:
                self._best_epoch = self._epoch
            best_epoch = self._best_epoch
        if improved:
            self.best_weights = self.model.get_weights()  # numpy copies
        if self.config.early_stopping and best_epoch is not None:
            return self._epoch - best_epoch >= self.config.patience
        return False


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first[:300]}" if first else type(error).__name__


@cache
def _callback_class():
    from dcnn_core.runtime import import_keras

    keras = import_keras()

    class ProgressCallback(keras.callbacks.Callback):
        """Feeds a job's progress; stops training on request, divergence or early stopping."""

        def __init__(self, job: TrainingJob):
            super().__init__()
            self.job = job

        def on_epoch_begin(self, epoch, logs=None):
            self.job._on_epoch_begin()

        def on_train_batch_end(self, batch, logs=None):
            self.job._on_batch(batch, logs or {})

        def on_epoch_end(self, epoch, logs=None):
            rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            if self.job._on_epoch(epoch, logs or {}, rate):
                self.model.stop_training = True

    return ProgressCallback


class JobRegistry:
    """All training jobs of this process, with a cap on how many run at once."""

    def __init__(self, max_concurrent: int = 2, idle_stop_s: float | None = None):
        self.max_concurrent = max_concurrent
        self.idle_stop_s = idle_stop_s
        self.on_evict = None  # called with each ended job dropped from memory by ``evict_idle``
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._lock = threading.Lock()
        self._jobs: dict[str, TrainingJob] = {}
        if idle_stop_s:
            threading.Thread(target=self._reap_forever, name="idle-job-reaper", daemon=True).start()

    def submit(self, job: TrainingJob) -> TrainingJob:
        """Start ``job`` in a daemon thread; it waits in the queue while all slots are busy."""
        job.queue_position_fn = lambda: self.queue_position(job)
        job.touch()
        with self._lock:
            self._jobs[job.job_id] = job
        threading.Thread(target=job.run, args=(self._slots,), name=f"train-{job.job_id}", daemon=True).start()
        return job

    def add_ended(self, job: TrainingJob) -> None:
        """Register a run restored from disk (it does not train)."""
        with self._lock:
            self._jobs[job.job_id] = job

    def get(self, job_id: str) -> TrainingJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self, owner: str | None = None) -> list[TrainingJob]:
        with self._lock:
            jobs = list(self._jobs.values())
        jobs.sort(key=lambda job: job.created_at)
        return [job for job in jobs if owner is None or job.owner == owner]

    def queue_position(self, job: TrainingJob) -> int | None:
        """1 for the next job to start, or None when ``job`` is not waiting."""
        queued = [j for j in self.jobs() if j.status == QUEUED]
        for position, other in enumerate(queued, start=1):
            if other is job:
                return position
        return None

    def running_count(self) -> int:
        return sum(1 for job in self.jobs() if job.status == RUNNING)

    def remove(self, job_id: str) -> bool:
        """Forget an ended job (its model is released); False if it is still active."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or not job.ended:
                return False
            del self._jobs[job_id]
            return True

    def stop_idle(self, now: float | None = None) -> list[TrainingJob]:
        """Stop active jobs whose owner has not looked at them for ``idle_stop_s``."""
        now = time.time() if now is None else now
        stopped = []
        for job in self.jobs():
            if job.status in ACTIVE_STATES and self.idle_stop_s and now - job.last_seen > self.idle_stop_s:
                minutes = max(1, round(self.idle_stop_s / 60))
                job.request_stop(f"Stopped because nobody had looked at it for {minutes} min")
                stopped.append(job)
        return stopped

    def evict_idle(self, now: float | None = None) -> list[TrainingJob]:
        """Drop ended jobs nobody has looked at for ``idle_stop_s`` (their models leave memory).

        Only jobs that ``on_evict`` accepts (e.g. because they are saved on disk) are dropped.
        """
        now = time.time() if now is None else now
        evicted = []
        for job in self.jobs():
            if self.on_evict is None or not (job.ended and self.idle_stop_s and now - job.last_seen > self.idle_stop_s):
                continue
            # Out of the registry first, then handed over: a restore in between finds it in neither place twice.
            if self.remove(job.job_id):
                if self.on_evict(job):
                    evicted.append(job)
                else:
                    self.add_ended(job)
        return evicted

    def _reap_forever(self) -> None:
        while True:
            time.sleep(min(30.0, max(1.0, (self.idle_stop_s or 60) / 4)))
            try:
                self.stop_idle()
                self.evict_idle()
            except Exception:  # the reaper must outlive any one bad job
                continue
