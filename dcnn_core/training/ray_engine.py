"""The Ray engine: every training runs in worker processes of a Ray cluster, none in the web server.

Set ``DCNN_RAY_ADDRESS`` (``local`` starts Ray on this machine; ``auto`` or ``host:port`` joins a
running cluster) and the app trains here instead of in its own process; pages see no difference,
because both engines answer the same door (``dcnn_core.training.engine``).

How it fits Ray:

- a few long-lived worker actors (``ray_worker.TrainingWorker``), one per CPU of the cluster, each
  with its own TensorFlow runtime, each hosting many runs that take fair turns at its CPU;
- a new run goes to the worker with the fewest active runs; a user's own images travel once
  (``ray.put``), a built-in set is loaded by each worker from its reference;
- a poller thread here asks every busy worker, twice a second, what changed since its cursors
  (``ProgressLog.delta``) and mirrors it, so the pages read progress from memory, never from Ray;
- a run that ends is saved by its worker to the runs folder (shared by the web server and the
  workers: one machine, or a shared disk); the web server loads its model from there to predict;
- a worker that dies ends only its own runs, each with a message (its model up to its last save
  is kept) and is replaced; a cluster that cannot be reached refuses Start within seconds.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

from dcnn_core.data import datasets
from dcnn_core.room.rules import Refused, RoomPlan
from dcnn_core.training import runs
from dcnn_core.training.description import RunDescription
from dcnn_core.training.engine import RoomState, UnknownRun
from dcnn_core.training.job import fine_tune_epochs
from dcnn_core.training.local import SHELF_KEY, LocalEngine
from dcnn_core.training.progress import Progress, ProgressLog, Status

_log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 15.0  # joining (or starting) the cluster; after that, Start is refused with a message
CALL_TIMEOUT_S = 10.0  # one call to a worker: a start, a stop, a continue
POLL_EVERY_S = 0.5
LOADED_MODELS = 8  # ended runs' models kept loaded in the web server for prediction (least recently used leave)
PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
FORWARDED = ("DCNN_OFFLINE", "DCNN_WEIGHTS_DIR", "DCNN_STANDIN_IMAGES_PER_CLASS", "TF_CPP_MIN_LOG_LEVEL", "KERAS_HOME")
UNREACHABLE = ("The training cluster cannot be reached right now, so training cannot start. "
               "Try again in a minute; if it lasts, tell the organiser.")  # fmt: skip
WORKER_LOST = ("The training worker running this run stopped unexpectedly (its process ended). Other runs go on. "
               "Start it again, or continue it if it was saved after an epoch.")  # fmt: skip


class MirroredRun:
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

    job_id = property(lambda self: self.description.run_id)
    owner = property(lambda self: self.description.owner)
    spec = property(lambda self: self.description.spec)
    config = property(lambda self: self.description.config)
    dataset_ref = property(lambda self: self.description.dataset_ref)
    strategy = property(lambda self: self.description.strategy)
    created_at = property(lambda self: self.description.created_at)
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


class RayEngine(LocalEngine):
    """``TrainingEngine`` with every run in Ray worker processes; the bookkeeping (rules, runs on disk) is the local engine's."""

    def __init__(self, store: runs.RunStore, rules=None, resolve=None, *, address: str, idle_stop_s: float | None = None,
                 workers: int | None = None, tf_threads: int = 1, slice_s: float = 1.0):  # fmt: skip
        super().__init__(store, rules, resolve, idle_stop_s=idle_stop_s, slice_s=slice_s)
        self.address = address
        self.tf_threads, self.slice_s, self.wanted_workers = tf_threads, slice_s, workers
        self.workers: list = []  # Ray actor handles, by index
        self._worker_lock = threading.Lock()
        self._shared_data: dict[str, object] = {}  # shelf token → ObjectRef of a user's own images
        self._models: OrderedDict[str, object] = OrderedDict()  # run id → restored TrainingJob with its model
        self._connected = threading.Event()
        self._connect_error = ""
        self._closed = False
        threading.Thread(target=self._connect_and_poll, name="ray-engine", daemon=True).start()

    # --- the door --------------------------------------------------------------------------------

    def submit(self, description: RunDescription) -> str:
        import dataclasses

        dataset = self._dataset(description.dataset_ref)
        self.rules.check_design(description.spec, dataset.input_shape, dataset.num_classes)
        self._ready()
        with self._lock:
            self.rules.check_train(self._usage(description.owner), new_run=True)
            room = self.plan(description.config.epochs)
            config = dataclasses.replace(description.config, epochs=room.epochs)
            reference = {"title": dataset.title, **description.dataset_ref}
            description = dataclasses.replace(description, config=config, limits=room.limits, dataset_ref=reference,
                                              max_parameters=self.rules.max_parameters)  # fmt: skip
            index = self._least_loaded()
            mirror = MirroredRun(description, index, stop=self._stop_remote)
            self.registry.add_ended(mirror)  # tracked here; it trains there
        try:
            self._call(self.workers[index].start.remote(description, self._data_argument(description.dataset_ref, dataset)))
        except Refused:
            self.registry.discard(mirror.job_id)
            raise
        return mirror.job_id

    def continue_run(self, run_id: str, extra_epochs: int) -> None:
        job = self._job(run_id)
        if not job.ended or not job.has_model:
            raise ValueError("Only a finished or stopped run with a model can be continued.")
        if job.status in (Status.FAILED, Status.DIVERGED):
            raise ValueError("A failed or diverged run cannot be continued; start a new one.")
        if not 1 <= extra_epochs <= 500:
            raise ValueError("Continue for 1 to 500 more epochs.")
        self._ready()
        with self._lock:
            self.rules.check_train(self._usage(job.owner), new_run=False)
            index = self._least_loaded()
            mirror = MirroredRun(job.description, index, stop=self._stop_remote)
            self.registry.discard(run_id)
            self.registry.add_ended(mirror)
        self._models.pop(run_id, None)
        try:
            data = self._shared_data.get(str(job.dataset_ref.get(SHELF_KEY))) if SHELF_KEY in job.dataset_ref else None
            self._call(self.workers[index].resume.remote(run_id, extra_epochs, data))
        except Refused:
            self.registry.discard(run_id)
            self.registry.add_ended(job)  # nothing lost: the run as it was
            raise

    def stop(self, run_id: str, reason: str = "") -> bool:
        job = self.registry.get(run_id)
        if job is None or job.ended:
            return False
        job.request_stop(reason)
        return True

    def trained(self, run_id: str):
        """The ended run's model, loaded from the runs folder into this process (a few are kept loaded)."""
        job = self.registry.get(run_id)
        if job is None or not job.ended or not job.has_model:
            return None
        if run_id in self._models:
            self._models.move_to_end(run_id)
            return self._models[run_id]
        try:
            record = self.store.load(self.store.root / run_id)
            dataset = self._dataset_for(record)
            loaded = runs.restore_job(record, dataset) if dataset is not None else None
        except Exception:  # damaged or gone: nothing to predict with
            return None
        if loaded is not None:
            self._models[run_id] = loaded
            while len(self._models) > LOADED_MODELS:
                self._models.popitem(last=False)
        return loaded

    def delete(self, run_id: str) -> bool:
        self._models.pop(run_id, None)
        return super().delete(run_id)

    def room(self) -> RoomState:
        active = [job for job in self.registry.jobs() if not job.ended]
        running = sum(1 for job in active if job.status == Status.RUNNING)
        computing = min(running, len(self.workers))
        return RoomState(computing, len(active) - computing, running, max(1, len(self.workers)))

    def plan(self, epochs: int) -> RoomPlan:
        return self.rules.plan_run(epochs, self.shared())

    def close(self) -> None:
        """Stop polling and end the workers (their runs end with them)."""
        import ray

        self._closed = True
        for worker in self.workers:
            try:
                ray.kill(worker)
            except Exception:
                pass

    # --- Ray --------------------------------------------------------------------------------------

    def _connect_and_poll(self) -> None:
        try:
            self._connect()
        except Exception as error:  # unreachable, or Ray not installed: every Start says so
            self._connect_error = f"{type(error).__name__}: {error}"
            _log.warning("Ray engine: cannot reach the cluster at %s: %s", self.address, self._connect_error)
            return
        self._connected.set()
        while not self._closed:
            started = time.monotonic()
            try:
                self._poll_once()
            except Exception:  # the poller must outlive any one bad answer
                _log.exception("Ray engine: poll failed")
            time.sleep(max(0.05, POLL_EVERY_S - (time.monotonic() - started)))

    def _connect(self) -> None:
        import ray

        env = {"PYTHONPATH": os.pathsep.join(filter(None, [PROJECT_ROOT, os.environ.get("PYTHONPATH", "")])),
               "DCNN_TF_THREADS": str(self.tf_threads),
               **{name: os.environ[name] for name in FORWARDED if name in os.environ}}  # fmt: skip
        options = {"namespace": "dcnn-studio", "runtime_env": {"env_vars": env}, "log_to_driver": False,
                   "ignore_reinit_error": True}  # fmt: skip
        if self.address == "local":
            options |= {"include_dashboard": False, "num_cpus": os.cpu_count() or 2}
        else:
            options["address"] = self.address
        if not ray.is_initialized():
            ray.init(**options)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        count = self.wanted_workers or max(1, cpus)
        actor = ray.remote(num_cpus=1, max_concurrency=64, max_restarts=0)(_worker_class())
        with self._worker_lock:
            self.workers = [self._new_worker(actor) for _ in range(count)]
        self._actor_class = actor

    def _new_worker(self, actor):
        return actor.remote(str(self.store.root.resolve()), self.tf_threads, self.slice_s)

    def _ready(self) -> None:
        if not self._connected.wait(CONNECT_TIMEOUT_S) or not self.workers:
            raise Refused(UNREACHABLE, "cluster")

    def _call(self, ref):
        import ray

        try:
            return ray.get(ref, timeout=CALL_TIMEOUT_S)
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayError) as error:
            _log.warning("Ray engine: a call to a worker failed: %s", error)
            raise Refused(UNREACHABLE, "cluster") from error

    def _stop_remote(self, run_id: str, reason: str) -> None:
        job = self.registry.get(run_id)
        index = getattr(job, "worker", None)
        if index is None:
            return
        try:
            self.workers[index].stop.remote(run_id, reason)  # answered at once: the worker's actor is threaded
        except Exception:
            _log.warning("Ray engine: could not ask worker %s to stop %s", index, run_id)

    def _least_loaded(self) -> int:
        load = [0] * len(self.workers)
        for job in self.registry.jobs():
            index = getattr(job, "worker", None)
            if index is not None and not job.ended and index < len(load):
                load[index] += 1
        return min(range(len(load)), key=load.__getitem__)

    def _data_argument(self, reference: dict, dataset: datasets.Dataset):
        """None for a built-in set (each worker loads it by reference); a user's own images go once into the object store."""
        import ray

        token = reference.get(SHELF_KEY)
        if token is None:
            return None
        if token not in self._shared_data:
            self._shared_data[str(token)] = ray.put(dataset)
        return self._shared_data[str(token)]

    def _poll_once(self) -> None:
        import ray

        by_worker: dict[int, dict[str, tuple | None]] = {}
        for job in self.registry.jobs():
            index = getattr(job, "worker", None)
            if isinstance(job, MirroredRun) and index is not None and not job.ended:
                by_worker.setdefault(index, {})[job.job_id] = job.cursor
        for index, cursors in by_worker.items():
            try:
                answers = ray.get(self.workers[index].poll.remote(cursors), timeout=CALL_TIMEOUT_S)
            except ray.exceptions.GetTimeoutError:
                continue  # busy: ask again next time
            except ray.exceptions.RayError as error:
                self._worker_lost(index, error)
                continue
            for run_id, answer in answers.items():
                job = self.registry.get(run_id)
                if not isinstance(job, MirroredRun) or answer.get("missing"):
                    continue
                job.apply(answer)
                if job.ended:
                    self._saved(job)

    def _saved(self, job: MirroredRun) -> None:
        try:
            record = self.store.load(self.store.root / job.job_id)
        except Exception:  # not saved (e.g. the disk was full, or it failed before an epoch): listed, not predicted with
            record = None
        job.mark_saved(record)

    def _worker_lost(self, index: int, error: Exception) -> None:
        """A worker died: its runs end with a message; a fresh worker takes its place for new runs."""
        _log.warning("Ray engine: worker %s was lost: %s", index, error)
        for job in self.registry.jobs():
            if isinstance(job, MirroredRun) and job.worker == index and not job.ended:
                job.finish(Status.FAILED, WORKER_LOST)
                self._saved(job)
        with self._worker_lock:
            try:
                self.workers[index] = self._new_worker(self._actor_class)
            except Exception:
                _log.exception("Ray engine: could not replace worker %s", index)

    def _restored(self, record: runs.RunRecord, dataset):
        """A saved run listed in this process without loading its model (``trained`` loads it when asked)."""
        description = RunDescription(record.spec, record.config, record.dataset_ref, owner=record.owner, run_id=record.run_id,
                                     strategy=record.strategy, created_at=record.created_at)  # fmt: skip
        return MirroredRun(description, None, record=record, stop=self._stop_remote)

    def _job(self, run_id: str):
        job = self.registry.get(run_id)
        if job is None:
            raise UnknownRun(run_id)
        return job


def _worker_class():
    from dcnn_core.training.ray_worker import TrainingWorker

    return TrainingWorker
