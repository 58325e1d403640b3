"""A Ray worker process that hosts many runs: the worker side of ``dcnn_core.training.engines.ray_engine``.

One TensorFlow runtime costs hundreds of MB, so a worker process holds many runs, each in a thread
taking fair turns at its CPU (``FairScheduler``, as in the web server's own engine). Its methods are
short and return plain data; a threaded actor answers ``poll`` and ``stop`` while runs train.

This module never imports Ray: the engine makes the class an actor (``ray.remote``) where Ray is used.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache

from dcnn_core.training.description import RunDescription
from dcnn_core.training.job import TrainingJob
from dcnn_core.training.registry import JobRegistry


@lru_cache(maxsize=4)
def _built_in(key: str, options_json: str):
    """A built-in data set, loaded once per worker process (shared by its runs, read-only)."""
    import json

    from dcnn_core.data import datasets

    return datasets.load_dataset(key, **json.loads(options_json))


class TrainingWorker:
    """Runs handed over by the engine, trained here in turns; everything it returns is plain data."""

    def __init__(self, runs_dir: str, tf_threads: int = 1, slice_s: float = 1.0):
        from dcnn_core import runtime
        from dcnn_core.training import runs

        runtime.configure(tf_threads)
        self.store = runs.RunStore(runs_dir)
        self.registry = JobRegistry(max_concurrent=1, slice_s=slice_s)
        self._lock = threading.Lock()
        self._warm = threading.Thread(target=self._import_keras, name="import-keras", daemon=True)
        self._warm.start()  # the first run need not wait for TensorFlow's import on top of its build

    @staticmethod
    def _import_keras() -> None:
        from dcnn_core.runtime import import_keras

        import_keras()

    def pid(self) -> int:
        return os.getpid()

    def start(self, description: RunDescription, dataset=None) -> str:
        """Train a new run (``dataset``: a user's own images; None: load the built-in set its reference names)."""
        import json

        if dataset is None:
            reference = description.dataset_ref
            dataset = _built_in(str(reference.get("key")), json.dumps(reference.get("options") or {}, sort_keys=True))
        job = TrainingJob(description, dataset)
        job.on_end = self.store.save
        self.registry.submit(job)
        return job.job_id

    def resume(self, run_id: str, extra_epochs: int, limits=None, dataset=None) -> None:
        """Continue a run: the one held here, or one read back from the runs folder."""
        from dcnn_core.training import runs

        self._warm.join()
        job = self.registry.get(run_id)
        if job is None:
            record = self.store.load(self.store.root / run_id)
            if dataset is None:
                if record.own_images:
                    dataset = self.store.load_images(record)
                else:
                    import json

                    reference = record.dataset_ref
                    dataset = _built_in(str(reference.get("key")), json.dumps(reference.get("options") or {}, sort_keys=True))
            job = runs.restore_job(record, dataset)
            job.on_end = self.store.save
            self.registry.add_ended(job)
        job.prepare_continue(extra_epochs, limits)
        self.registry.submit(job)

    def stop(self, run_id: str, reason: str = "") -> bool:
        job = self.registry.get(run_id)
        if job is None or job.ended:
            return False
        job.request_stop(reason)
        return True

    def poll(self, cursors: dict[str, tuple | None]) -> dict[str, dict]:
        """For each run asked about: what changed since its cursor, and where it stands (plain data)."""
        answers = {}
        for run_id, cursor in cursors.items():
            job = self.registry.get(run_id)
            if job is None:
                answers[run_id] = {"missing": True}
                continue
            new_cursor, change = job.delta(tuple(cursor) if cursor is not None else None)
            progress = job.snapshot()
            answers[run_id] = {
                "cursor": new_cursor, "change": change, "status": str(progress.status), "message": progress.message,
                "details": progress.details, "elapsed_s": progress.elapsed_s, "eta_s": progress.eta_s,
                "queue_position": progress.queue_position,
                "test": [progress.test_accuracy, progress.test_loss] if progress.test_accuracy is not None else None,
                "ended": job.ended,
            }  # fmt: skip
            if job.ended:  # saved to the runs folder: the web server reads it from there; free this process
                self.registry.remove(run_id)
        return answers

    def load(self) -> dict:
        """How busy this worker is: runs computing or waiting, and its process's memory."""
        import psutil

        active = sum(1 for job in self.registry.jobs() if not job.ended)
        return {"active": active, "rss_mb": psutil.Process().memory_info().rss / 2**20, "pid": os.getpid()}
