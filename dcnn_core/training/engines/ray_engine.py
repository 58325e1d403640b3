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
import threading
import time
from collections import OrderedDict

from dcnn_core.data import datasets
from dcnn_core.room.rules import Refused
from dcnn_core.training import runs
from dcnn_core.training.description import RunDescription
from dcnn_core.training.engine import RoomState
from dcnn_core.training.engines import ray_setup
from dcnn_core.training.engines.local import SHELF_KEY, LocalEngine
from dcnn_core.training.engines.mirror import MirroredRun
from dcnn_core.training.engines.ray_setup import probe
from dcnn_core.training.progress import Status

_log = logging.getLogger(__name__)

RECONNECT_EVERY_S = 5.0  # after the cluster was lost or could not be reached
CONNECT_TIMEOUT_S = 15.0  # joining a running cluster; after that, Start is refused with a message
LOCAL_START_TIMEOUT_S = 90.0  # starting one on this machine (a few seconds, more on a busy machine)
CALL_TIMEOUT_S = 10.0  # one call to a worker: a start, a stop, a continue
POLL_EVERY_S = 0.5
LOADED_MODELS = 8  # ended runs' models kept loaded in the web server for prediction (least recently used leave)
UNREACHABLE = ("The training cluster cannot be reached right now, so training cannot start. "
               "Try again in a minute; if it lasts, tell the organiser.")  # fmt: skip
CLUSTER_LOST = ("The training cluster went away while this run trained; the web app goes on. Start it again once the "
                "organiser has the cluster back (its model up to its last save is kept).")  # fmt: skip
WORKER_LOST = ("The training worker running this run stopped unexpectedly (its process ended). Other runs go on. "
               "Start it again, or continue it if it was saved after an epoch.")  # fmt: skip


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
        self._settled = threading.Event()  # connected, or given up
        self._connect_error = ""
        self._closed = False
        self._gcs_address = address
        threading.Thread(target=self._connect_and_poll, name="ray-engine", daemon=True).start()

    # --- the door --------------------------------------------------------------------------------

    def _track(self, description: RunDescription, dataset: datasets.Dataset) -> None:
        self.registry.add_ended(MirroredRun(description, self._least_loaded(), stop=self._stop_remote))  # tracked here

    def _launch(self, description: RunDescription, dataset: datasets.Dataset) -> None:
        """The run trains in its worker; if the worker cannot take it, nothing of it is left here."""
        mirror = self.registry.get(description.run_id)
        try:
            self._call(self.workers[mirror.worker].start.remote(description, self._data_argument(description.dataset_ref, dataset)))
        except Refused:
            self.registry.discard(description.run_id)
            raise

    def continue_run(self, run_id: str, extra_epochs: int) -> None:
        import dataclasses

        job = self._job(run_id)
        if not job.ended or not job.has_model:
            raise ValueError("Only a finished or stopped run with a model can be continued.")
        if job.status in (Status.FAILED, Status.DIVERGED):
            raise ValueError("A failed or diverged run cannot be continued; start a new one.")
        if not 1 <= extra_epochs <= 500:
            raise ValueError("Continue for 1 to 500 more epochs.")
        self._check_design_again(job)
        self._ready()
        with self._lock:
            self.rules.check_train(self._usage(job.owner), new_run=False)
            room = self.plan(extra_epochs)  # a fresh session of training: the room's limits as they are now
            extra_epochs = room.epochs
            index = self._least_loaded()
            mirror = MirroredRun(dataclasses.replace(job.description, limits=room.limits), index, stop=self._stop_remote)
            self.registry.discard(run_id)
            self.registry.add_ended(mirror)
        self._models.pop(run_id, None)
        try:
            data = self._shared_data.get(str(job.dataset_ref.get(SHELF_KEY))) if SHELF_KEY in job.dataset_ref else None
            self._call(self.workers[index].resume.remote(run_id, extra_epochs, room.limits, data))
        except Refused:
            self.registry.discard(run_id)
            self.registry.add_ended(job)  # nothing lost: the run as it was
            raise

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

    def close(self) -> None:
        """Stop polling and end the workers (their runs end with them)."""
        import ray

        self._closed = True
        self._connected.clear()
        for worker in self.workers:
            try:
                ray.kill(worker)
            except Exception:
                pass
        self.workers = []

    # --- Ray --------------------------------------------------------------------------------------

    def _connect_and_poll(self) -> None:
        """This thread starts (or joins) the cluster and lives as long as the engine: a local cluster dies with the
        thread that started it. It polls the workers; when the cluster goes away it lets go of it (Ray would end this
        whole process a minute later otherwise) and joins again once it is back."""
        while not self._closed:
            try:
                self._connect()
                self._connected.set()
            except Exception as error:  # unreachable, or Ray not installed: every Start says so
                self._connect_error = f"{type(error).__name__}: {error}"
                _log.warning("Ray engine: cannot reach the cluster at %s: %s", self.address, self._connect_error)
            finally:
                self._settled.set()
            while self._connected.is_set() and not self._closed:
                started = time.monotonic()
                try:
                    self._poll_once()
                except Exception:  # the poller must outlive any one bad answer
                    _log.exception("Ray engine: poll failed")
                if not self._cluster_answers():
                    self._cluster_lost()
                time.sleep(max(0.05, POLL_EVERY_S - (time.monotonic() - started)))
            time.sleep(RECONNECT_EVERY_S)

    def _cluster_answers(self) -> bool:
        try:
            probe(self._gcs_address, timeout=1.0)
            return True
        except OSError:
            return False

    def _cluster_lost(self) -> None:
        """The cluster is gone: its runs end with a message, Ray lets go of it, Start says so until it is back."""
        import ray

        _log.warning("Ray engine: the cluster at %s is gone", self._gcs_address)
        self._connected.clear()
        for job in self.registry.jobs():
            if isinstance(job, MirroredRun) and not job.ended:
                job.finish(Status.FAILED, CLUSTER_LOST)
                self._note_saved(job)
        with self._worker_lock:
            self.workers = []
        self._shared_data.clear()
        try:
            ray.shutdown()
        except Exception:
            _log.exception("Ray engine: shutdown after losing the cluster failed")

    def _connect(self) -> None:
        probe(self.address)
        ray = ray_setup.import_ray()
        if not ray.is_initialized():
            ray.init(**ray_setup.init_options(self.address, self.tf_threads))
        self._gcs_address = ray.get_runtime_context().gcs_address
        cpus = int(ray.cluster_resources().get("CPU", 1))
        count = self.wanted_workers or max(1, cpus)
        actor = ray_setup.worker_actor_class()
        with self._worker_lock:
            self.workers = [self._new_worker(actor) for _ in range(count)]
        self._actor_class = actor

    def _new_worker(self, actor):
        return actor.remote(str(self.store.root.resolve()), self.tf_threads, self.slice_s)

    def _ready(self) -> None:
        self._settled.wait(LOCAL_START_TIMEOUT_S if self.address == "local" else CONNECT_TIMEOUT_S)
        if not self._connected.is_set() or not self.workers:
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
            if not self._connected.is_set():  # the cluster was found gone meanwhile
                return
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
                    self._note_saved(job)

    def _note_saved(self, job: MirroredRun) -> None:
        try:
            record = self.store.load(self.store.root / job.job_id)
        except Exception:  # not saved (e.g. the disk was full, or it failed before an epoch): listed, not predicted with
            record = None
        job.mark_saved(record)

    def _worker_lost(self, index: int, error: Exception) -> None:
        """A worker died: its runs end with a message; a fresh worker takes its place for new runs."""
        for _ in range(4):  # a cluster going down takes its workers first: look again for a moment before blaming one
            if not self._cluster_answers():
                self._cluster_lost()
                return
            time.sleep(0.5)
        _log.warning("Ray engine: worker %s was lost: %s", index, error)
        for job in self.registry.jobs():
            if isinstance(job, MirroredRun) and job.worker == index and not job.ended:
                job.finish(Status.FAILED, WORKER_LOST)
                self._note_saved(job)
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
