"""Every training run of this process: who owns it, whose turn it is, and the room's limits.

One ``JobRegistry`` per server process. It starts a worker thread per run; the runs take fair
turns at the processor (``dcnn_core.scheduler``), so every attendee's curve moves while others
train. Its checks are atomic: one active training per owner, however many tabs press Start.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from dcnn_core.progress import ACTIVE_STATES, Status
from dcnn_core.scheduler import FairScheduler
from dcnn_core.training import TrainingJob


class Refused(ValueError):
    """A start or continue the registry will not take; the message says why and what to do."""


@dataclass(frozen=True)
class RoomLimits:
    """Bounds that keep one shared server usable for a whole room (0: no bound)."""

    max_queue: int = 60  # active trainings (computing or waiting) in the whole server
    max_runs_per_owner: int = 20  # runs one user keeps; delete one to start another
    images_per_epoch: int = 0  # shared server: training images per epoch of a run
    max_epochs: int = 0  # shared server: epochs per run
    max_train_minutes: int = 0  # shared server: training time per run

    def within(self, server: RoomLimits) -> None:
        """Refuse (``Refused``) any bound looser than the server's own."""
        for name in ("max_queue", "max_runs_per_owner", "images_per_epoch", "max_epochs", "max_train_minutes"):
            value, most = getattr(self, name), getattr(server, name)
            if value < 0 or (most and not 1 <= value <= most):
                bound = f"from 1 to {most}" if most else "0 (no bound) or more"
                raise Refused(f"{name.replace('_', ' ').capitalize()} must be {bound} on this server (got {value}).")


class JobRegistry:
    """All training jobs of this process, with fair turns for the active ones."""

    def __init__(self, max_concurrent: int = 2, idle_stop_s: float | None = None, *, slice_s: float = 1.0,
                 limits: RoomLimits | None = None):  # fmt: skip
        self.max_concurrent = max_concurrent
        self.idle_stop_s = idle_stop_s
        self.limits = self.server_limits = limits or RoomLimits()  # the room's limits now, and the server's maxima
        self.max_slots = max_concurrent
        self.scheduler = FairScheduler(slots=max_concurrent, slice_s=slice_s)
        self.on_evict = None  # called with each ended job dropped from memory by ``evict_idle``
        self._lock = threading.RLock()
        self._jobs: dict[str, TrainingJob] = {}
        self._visitors: dict[str, float] = {}  # owner → when their pages last asked for their runs
        if idle_stop_s:
            threading.Thread(target=IdleReaper(self).reap_forever, name="idle-job-reaper", daemon=True).start()

    def submit(self, job: TrainingJob) -> TrainingJob:
        """Start ``job`` (new, or prepared to continue) in a daemon thread; it waits for its first turn."""
        job.touch()
        with self._lock:
            self._jobs[job.job_id] = job
        threading.Thread(target=job.run, args=(self.scheduler,), name=f"train-{job.job_id}", daemon=True).start()
        return job

    def start_for_owner(self, job: TrainingJob) -> TrainingJob:
        """Submit a new run unless its owner already trains one or a room limit is reached (``Refused``)."""
        with self._lock:
            self._check_can_train(job.owner)
            kept = len(self.jobs(owner=job.owner))
            if self.limits.max_runs_per_owner and kept >= self.limits.max_runs_per_owner:
                raise Refused(f"You have {kept} runs, the most this server keeps per person: delete one in Your runs to start another.")
            return self.submit(job)

    def continue_for_owner(self, job: TrainingJob, extra_epochs: int) -> TrainingJob:
        """Continue an ended run for ``extra_epochs`` more, with the same checks as a start, all under one lock."""
        with self._lock:
            self._check_can_train(job.owner)
            job.prepare_continue(extra_epochs)
            return self.submit(job)

    def set_room(self, limits: RoomLimits, slots: int) -> None:
        """The instructor's limits for this session, within the server's (``Refused`` otherwise); new runs follow them."""
        limits.within(self.server_limits)
        if not 1 <= slots <= self.max_slots:
            raise Refused(f"Trainings computing at once must be from 1 to {self.max_slots} on this server (got {slots}).")
        with self._lock:
            self.limits = limits
            self.scheduler.set_slots(slots)

    def _check_can_train(self, owner: str) -> None:
        if any(job.status in ACTIVE_STATES for job in self.jobs(owner=owner)):
            raise Refused("You already have a training running (perhaps in another tab): stop it first, or wait for it to end.")
        active = sum(1 for job in self.jobs() if job.status in ACTIVE_STATES)
        if self.limits.max_queue and active >= self.limits.max_queue:
            raise Refused(f"The server is training {active} models, its limit: try again in a minute.")

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

    def has_active(self, owner: str) -> bool:
        """Whether ``owner`` has a training computing or waiting (one at a time per user)."""
        return any(job.status in ACTIVE_STATES for job in self.jobs(owner=owner))

    def note_visitor(self, owner: str, now: float | None = None) -> None:
        with self._lock:
            self._visitors[owner] = time.time() if now is None else now

    def recent_owners(self, window_s: float, now: float | None = None) -> list[str]:
        """People whose pages were open in the last ``window_s`` seconds (older visits are forgotten)."""
        now = time.time() if now is None else now
        with self._lock:
            self._visitors = {owner: seen for owner, seen in self._visitors.items() if now - seen <= window_s}
            return list(self._visitors)

    def queue_position(self, job: TrainingJob) -> int | None:
        """1 for the next job to have its first turn, or None when ``job`` is not waiting for one."""
        return self.scheduler.place(job.job_id)

    def running_count(self) -> int:
        return sum(1 for job in self.jobs() if job.status == Status.RUNNING)

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
        return IdleReaper(self).stop_idle(now)

    def evict_idle(self, now: float | None = None) -> list[TrainingJob]:
        """Drop ended jobs nobody has looked at for ``idle_stop_s``; only those ``on_evict`` accepts (saved on disk)."""
        return IdleReaper(self).evict_idle(now)


class IdleReaper:
    """Stops trainings nobody watches and lets idle ended runs leave memory (``on_evict`` puts them on disk)."""

    def __init__(self, registry: JobRegistry):
        self.registry = registry
        self.idle_stop_s = registry.idle_stop_s

    def stop_idle(self, now: float | None = None) -> list[TrainingJob]:
        """Stop active jobs whose owner has not looked at them for ``idle_stop_s``."""
        now = time.time() if now is None else now
        stopped = []
        for job in self.registry.jobs():
            if job.status in ACTIVE_STATES and self.idle_stop_s and now - job.last_seen > self.idle_stop_s:
                minutes = max(1, round(self.idle_stop_s / 60))
                job.request_stop(f"Stopped because nobody had looked at it for {minutes} min")
                stopped.append(job)
        return stopped

    def evict_idle(self, now: float | None = None) -> list[TrainingJob]:
        """Drop ended jobs nobody has looked at for ``idle_stop_s``; only those ``on_evict`` accepts (saved on disk)."""
        now = time.time() if now is None else now
        evicted = []
        for job in self.registry.jobs():
            if self.registry.on_evict is None or not (job.ended and self.idle_stop_s and now - job.last_seen > self.idle_stop_s):
                continue
            # Out of the registry first, then handed over: a restore in between finds it in neither place twice.
            if self.registry.remove(job.job_id):
                if self.registry.on_evict(job):
                    evicted.append(job)
                else:
                    self.registry.add_ended(job)
        return evicted

    def reap_forever(self) -> None:
        while True:
            time.sleep(min(30.0, max(1.0, (self.idle_stop_s or 60) / 4)))
            try:
                self.stop_idle()
                self.evict_idle()
            except Exception:  # the reaper must outlive any one bad job
                continue
