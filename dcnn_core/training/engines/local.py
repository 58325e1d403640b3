"""The in-process engine: every run trains in a thread of this process, taking fair turns (the default).

It keeps the process's runs (``JobRegistry``), saves each ended run (``RunStore``), brings a person's
saved runs back from disk when they come back, lets idle ended runs leave memory, and asks
``ServerRules`` before any training starts. Pages see only what ``TrainingEngine`` returns.
"""

from __future__ import annotations

import secrets
import threading
import time
import weakref
from collections.abc import Callable

from dcnn_core.data import datasets
from dcnn_core.room.rules import Refused, RoomPlan, ServerRules, Usage
from dcnn_core.training import runs
from dcnn_core.training.description import RunDescription
from dcnn_core.training.engine import Observation, RoomState, RunInfo, UnknownRun
from dcnn_core.training.job import TrainingJob
from dcnn_core.training.progress import ACTIVE_STATES, Progress, Status
from dcnn_core.training.registry import JobRegistry

ROOM_WINDOW_S = 600  # people seen in the last ten minutes make a room
SHELF_KEY = "shelf"  # a data-set reference's entry naming a user's own images on the engine's shelf

Resolver = Callable[[dict], datasets.Dataset]  # a data-set reference → the data (raises DatasetUnavailable)


class DataShelf:
    """Users' own image sets, by an opaque token: what a run description refers to instead of carrying arrays.

    Held weakly: a set lives while a session or a run holds it, then leaves the shelf.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._sets: weakref.WeakValueDictionary[str, datasets.Dataset] = weakref.WeakValueDictionary()
        self._tokens: dict[int, str] = {}

    def put(self, dataset: datasets.Dataset) -> str:
        with self._lock:
            token = self._tokens.get(id(dataset))
            if token is None or self._sets.get(token) is not dataset:
                token = secrets.token_hex(8)
                self._sets[token] = dataset
                self._tokens[id(dataset)] = token
                weakref.finalize(dataset, self._tokens.pop, id(dataset), None)
            return token

    def get(self, token: str) -> datasets.Dataset | None:
        with self._lock:
            return self._sets.get(token)

    def holds(self, dataset: datasets.Dataset) -> bool:
        with self._lock:
            token = self._tokens.get(id(dataset))
            return token is not None and self._sets.get(token) is dataset

    def held_bytes(self) -> int:
        """Memory of every set on the shelf now (each held by a session or a run)."""
        with self._lock:
            return sum(dataset_bytes(dataset) for dataset in self._sets.values())


def dataset_bytes(dataset: datasets.Dataset) -> int:
    """The memory a data set's image and label arrays take."""
    return sum(array.nbytes for array in (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test))


class LocalEngine:
    """``TrainingEngine`` with every run in a thread of this process."""

    def __init__(self, store: runs.RunStore, rules: ServerRules | None = None, resolve: Resolver | None = None, *,
                 idle_stop_s: float | None = None, slice_s: float = 1.0):  # fmt: skip
        self.store = store
        self.rules = rules or ServerRules()
        self.resolve = resolve or _load_by_reference
        self.shelf = DataShelf()
        self.registry = JobRegistry(self.rules.slots, idle_stop_s=idle_stop_s, slice_s=slice_s)
        self.registry.on_evict = self._back_to_disk
        self._lock = threading.RLock()
        self._visitors: dict[str, float] = {}  # owner → when their pages last asked for their runs
        self._saved: dict[str, list[runs.RunRecord]] | None = None  # runs on disk not yet in memory, by owner

    # --- the door ----------------------------------------------------------------------------------

    def share_dataset(self, dataset: datasets.Dataset, reference: dict) -> dict:
        """A reference to ``dataset`` (a user's own images) that a run description can carry instead of its arrays."""
        if reference.get("key") in datasets.REGISTRY:
            return dict(reference)
        if not self.shelf.holds(dataset):  # a set new to the server counts against the room's memory for own images
            self.rules.check_own_images(self.shelf.held_bytes(), dataset_bytes(dataset))
        return {**reference, SHELF_KEY: self.shelf.put(dataset)}

    def plan(self, epochs: int) -> RoomPlan:
        """The limits a run started now would get (the room's when the server is shared)."""
        return self.rules.plan_run(epochs, self.shared())

    def submit(self, description: RunDescription) -> str:
        """Start a run for its owner: the rules first (``Refused``), then the room's limits applied; returns its id."""
        import dataclasses

        dataset = self._dataset(description.dataset_ref)
        self.rules.check_design(description.spec, dataset.input_shape, dataset.num_classes, description.config.batch_size)
        self._ready()
        with self._lock:  # the check and the start as one step: one training per person, however many tabs press Start
            self.rules.check_train(self._usage(description.owner), new_run=True)
            room = self.plan(description.config.epochs)
            config = dataclasses.replace(description.config, epochs=room.epochs)
            reference = {"title": dataset.title, **description.dataset_ref}
            description = dataclasses.replace(description, config=config, limits=room.limits, dataset_ref=reference,
                                              max_parameters=self.rules.max_parameters)  # fmt: skip
            self._track(description, dataset)
        self._launch(description, dataset)
        return description.run_id

    # What differs between engines: where a run trains.

    def _ready(self) -> None:
        """Raise ``Refused`` when runs cannot be started now (here, they always can)."""

    def _track(self, description: RunDescription, dataset: datasets.Dataset) -> None:
        """Register the new run (under the engine's lock); here it also starts, in a thread of its own."""
        job = TrainingJob(description, dataset)
        job.on_end = self.store.save
        self.registry.submit(job)

    def _launch(self, description: RunDescription, dataset: datasets.Dataset) -> None:
        """Hand the registered run to whatever trains it (outside the lock); here it has started already."""

    def continue_run(self, run_id: str, extra_epochs: int) -> None:
        """Train an ended run ``extra_epochs`` more, with the same rules as a start (``Refused``, or ValueError why not)."""
        job = self._job(run_id)
        self._check_design_again(job)
        with self._lock:
            self.rules.check_train(self._usage(job.owner), new_run=False)
            room = self.plan(extra_epochs)  # a fresh session of training: the room's limits as they are now
            job.prepare_continue(room.epochs, room.limits)
            self.registry.submit(job)

    def stop(self, run_id: str, reason: str = "") -> bool:
        job = self.registry.get(run_id)
        if job is None or job.ended:
            return False
        job.request_stop(reason)
        return True

    def observe(self, run_id: str, since: tuple | None = None) -> Observation:
        job = self._job(run_id)
        job.touch()
        cursor, change = job.delta(since)
        progress = job.snapshot()
        return Observation(run_id, progress.status, progress.message, cursor, change)

    def progress(self, run_id: str) -> Progress | None:
        job = self.registry.get(run_id)
        if job is None:
            return None
        job.touch()
        return job.snapshot()

    def runs(self, owner: str | None = None) -> list[RunInfo]:
        """An owner's runs, oldest first (every run for None); their saved runs come back from disk first."""
        if owner is not None:
            self._restore(owner)
        return [_info(job) for job in self.registry.jobs(owner=owner)]

    def run(self, run_id: str) -> RunInfo | None:
        job = self.registry.get(run_id)
        return _info(job) if job is not None else None

    def delete(self, run_id: str) -> bool:
        """Forget an ended run and remove its folder; False while it trains."""
        if not self.registry.remove(run_id):
            return False
        self.store.delete(run_id)
        return True

    def wait(self, run_id: str, timeout: float | None = None) -> bool:
        """Block until the run has ended (for scripts and tests); True if it did within ``timeout``."""
        return self._job(run_id).wait(timeout)

    def trained(self, run_id: str) -> TrainingJob | None:
        """The run's trained model with its data, in this process, once it has ended (for prediction)."""
        job = self.registry.get(run_id)
        return job if job is not None and job.ended and job.model is not None else None

    # --- who is here -------------------------------------------------------------------------------

    def visit(self, owner: str) -> None:
        """The owner's pages are open: their trainings are watched, and they count towards a shared room."""
        with self._lock:
            self._visitors[owner] = time.time()
        for job in self.registry.jobs(owner=owner):
            job.touch()

    def recent_owners(self, window_s: float = ROOM_WINDOW_S) -> list[str]:
        now = time.time()
        with self._lock:
            self._visitors = {owner: seen for owner, seen in self._visitors.items() if now - seen <= window_s}
            return list(self._visitors)

    def shared(self) -> bool:
        """Whether other people have used this server in the last few minutes: then the room's limits apply to new runs."""
        return len(self.recent_owners()) > 1

    def room(self) -> RoomState:
        scheduler = self.registry.scheduler
        return RoomState(scheduler.computing_count(), scheduler.waiting_count(), self.registry.running_count(), scheduler.slots)

    def set_room(self, limits, slots: int) -> None:
        """The instructor's limits for this session (``Refused`` beyond the server's); new runs follow them."""
        self.rules.set_room(limits, slots)
        self.registry.scheduler.set_slots(slots)

    # --- inside ------------------------------------------------------------------------------------

    def _job(self, run_id: str) -> TrainingJob:
        job = self.registry.get(run_id)
        if job is None:
            raise UnknownRun(run_id)
        return job

    def _check_design_again(self, job) -> None:
        """A Continue is a new session of training: its design and batch size against the server's rules as they are now."""
        dataset = getattr(job, "dataset", None)  # a run that trains elsewhere (a mirror) has none here
        if dataset is not None:
            shape, classes = dataset.input_shape, dataset.num_classes
        else:
            try:  # its saved record says what it was trained on
                data = self.store.load(self.store.root / job.job_id).data
                shape, classes = tuple(int(side) for side in data["input_shape"]), len(data["class_names"])
            except Exception:  # not saved, or unreadable: nothing to check it against
                return
        self.rules.check_design(job.spec, shape, classes, job.config.batch_size)

    def _usage(self, owner: str) -> Usage:
        mine = self.registry.jobs(owner=owner)
        return Usage(
            active_runs=sum(1 for job in mine if job.status in ACTIVE_STATES), runs_kept=len(mine),
            disk_bytes=self.store.bytes_used(job.job_id for job in mine) if self.rules.limits.max_disk_mb_per_owner else 0,
            server_active=sum(1 for job in self.registry.jobs() if job.status in ACTIVE_STATES),
            server_disk_bytes=self.store.total_bytes() if self.rules.limits.max_disk_mb_total else 0,
        )  # fmt: skip

    def _dataset(self, reference: dict) -> datasets.Dataset:
        token = reference.get(SHELF_KEY)
        if token is not None:
            dataset = self.shelf.get(str(token))
            if dataset is None:
                raise Refused("Your image set is no longer on the server (removed): import it again to train on it.", "data")
            return dataset
        try:
            return self.resolve(reference)
        except datasets.DatasetUnavailable as error:
            raise Refused(str(error), "data") from error

    def _saved_runs(self) -> dict[str, list[runs.RunRecord]]:
        with self._lock:
            if self._saved is None:
                self._saved = {}
                for record in self.store.load_all():
                    self._saved.setdefault(record.owner, []).append(record)
            return self._saved

    def _restore(self, owner: str) -> None:
        """Bring ``owner``'s saved runs back into memory (a run whose data cannot be loaded now is tried again later)."""
        saved = self._saved_runs()
        with self._lock:
            records = saved.pop(owner, [])
        for record in records:
            if self.registry.get(record.run_id) is not None:
                continue
            dataset = self._dataset_for(record)
            if dataset is None and not record.own_images:  # its data cannot be loaded now (offline?): try again on a later visit
                with self._lock:
                    saved.setdefault(owner, []).append(record)
                continue
            try:
                job = self._restored(record, dataset)
            except Exception:  # a damaged model or image file: still listed, so it can be deleted
                try:
                    job = runs.restore_summary(record, "Its saved model or images could not be read, so it is shown as a summary only.")
                except Exception:  # not even a summary can be made of it
                    continue
            self.registry.add_ended(job)

    def _restored(self, record: runs.RunRecord, dataset: datasets.Dataset | None):
        """A saved run back in memory, ready to predict with and to continue."""
        job = runs.restore_job(record, dataset) if dataset is not None else runs.restore_summary(record)
        job.on_end = self.store.save
        return job

    def _dataset_for(self, record: runs.RunRecord) -> datasets.Dataset | None:
        """The data set a saved run was trained on, if it can still be loaded (a user's own images: from the run folder)."""
        if record.own_images:
            try:
                return self.store.load_images(record) if record.has_saved_images else None
            except Exception:  # damaged or too large: the run comes back as a summary
                return None
        try:
            return self.resolve(record.dataset_ref)
        except Exception:  # unavailable offline, or options this version no longer takes
            return None

    def _back_to_disk(self, job: TrainingJob) -> bool:
        """Let an idle ended run leave memory if it is saved: its owner gets it back from disk."""
        try:
            record = self.store.load(self.store.root / job.job_id)
        except Exception:
            return False
        saved = self._saved_runs()
        with self._lock:
            saved.setdefault(record.owner, []).append(record)
        return True


def _info(job: TrainingJob) -> RunInfo:
    progress = job.snapshot()
    return RunInfo(
        run_id=job.job_id, owner=job.owner, spec=job.spec, config=job.config, dataset_ref=job.dataset_ref, strategy=job.strategy,
        created_at=job.created_at, status=progress.status, message=progress.message, epoch=progress.epoch, epochs=progress.epochs,
        history=progress.history, test_accuracy=progress.test_accuracy, elapsed_s=progress.elapsed_s,
        parameters=job.parameters,
        can_continue=job.ended and job.has_model and progress.status in (Status.FINISHED, Status.STOPPED),
    )  # fmt: skip


def _load_by_reference(reference: dict) -> datasets.Dataset:
    choice = datasets.DatasetChoice.from_dict(reference)
    return datasets.load_dataset(choice.key, **choice.options)
