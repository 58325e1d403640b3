"""Every training run of this process and whose turn it is: the in-process engine's insides.

One ``JobRegistry`` per engine. It starts a worker thread per run; the runs take fair turns at the
processor (``dcnn_core.training.scheduler``), so every attendee's curve moves while others train.
The rules (who may start what) are ``dcnn_core.room.rules``'s; ``dcnn_core.training.engines.local`` asks them.
"""

from __future__ import annotations

import threading
import time

from dcnn_core.training.job import TrainingJob
from dcnn_core.training.progress import ACTIVE_STATES, Status
from dcnn_core.training.scheduler import FairScheduler


class JobRegistry:
    """All training jobs of this process, with fair turns for the active ones."""

    def __init__(self, max_concurrent: int = 2, idle_stop_s: float | None = None, *, slice_s: float = 1.0):
        self.idle_stop_s = idle_stop_s
        self.scheduler = FairScheduler(slots=max_concurrent, slice_s=slice_s)
        self.on_evict = None  # called with each ended job dropped from memory by ``evict_idle``
        self._lock = threading.RLock()
        self._jobs: dict[str, TrainingJob] = {}
        if idle_stop_s:
            threading.Thread(target=IdleReaper(self).reap_forever, name="idle-job-reaper", daemon=True).start()

    def submit(self, job: TrainingJob) -> TrainingJob:
        """Start ``job`` (new, or prepared to continue) in a daemon thread; it waits for its first turn."""
        job.touch()
        with self._lock:
            self._jobs[job.job_id] = job
        threading.Thread(target=job.run, args=(self.scheduler,), name=f"train-{job.job_id}", daemon=True).start()
        return job

    def add_ended(self, job: TrainingJob) -> None:
        """Register a run restored from disk (it does not train)."""
        with self._lock:
            self._jobs[job.job_id] = job

    def discard(self, job_id: str) -> None:
        """Forget a job whatever its state (an engine replacing its own record of a run)."""
        with self._lock:
            self._jobs.pop(job_id, None)

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
