"""TensorFlow/Keras start-up, done once per process and only when needed; what the CPU can do.

Thread counts must be set before TensorFlow runs its first op, so every module
gets Keras through ``import_keras()``. TensorFlow's thread pool belongs to the whole process: every
training computing at a given moment shares it. So the pool is as large as the machine (the app's
default, ``Settings.tf_threads``): a lone user's training gets every core, and in a room the trainings
that compute at once (at most the scheduler's ``slots``) share them; the fair turns decide who computes.

A pool as large as the machine would leave the web server no core of its own, so training yields to it:
``yield_to_web_server`` runs TensorFlow's compute threads at a lower priority (``Settings.training_nice``).
An idle server loses nothing (a lower priority only matters when the cores are contended); a page run gets
a core the moment it needs one.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
from functools import cache
from pathlib import Path

from dcnn_core.settings import load_settings

_lock = threading.Lock()
_configured = False
_threads: int | None = None  # set by configure() before the first import; else read from the environment


def configure(tf_threads: int, training_nice: int | None = None) -> None:
    """Use ``tf_threads`` threads per TensorFlow op (takes effect at the first import) and lower TensorFlow's threads by
    ``training_nice`` (``yield_to_web_server``); the app passes its Settings (environment and secrets)."""
    global _threads, _nice
    _threads = tf_threads
    if training_nice is not None:
        _nice = training_nice


def import_keras():
    """Import Keras (TensorFlow backend) with the process's thread limits applied."""
    global _configured
    with _lock:
        if not _configured:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide C++ info lines in the server log
            os.environ.setdefault("KERAS_BACKEND", "tensorflow")
            import tensorflow as tf

            count = threads()
            try:
                tf.config.threading.set_intra_op_parallelism_threads(count)
                tf.config.threading.set_inter_op_parallelism_threads(count)
            except RuntimeError:
                pass  # TensorFlow already ran an op (e.g. in a notebook); keep its settings
            import keras  # noqa: F401  (its modules too, before the freeze)

            # TensorFlow and Keras bring ~430,000 objects that live as long as the process. Out of the
            # collector's reach, a full collection (which pauses every thread, training and web server alike)
            # takes milliseconds instead of ~0.2 s. Only what exists now is frozen: no model, no run.
            gc.freeze()
            _configured = True
    import keras

    return keras


def threads() -> int:
    """TensorFlow's intra-op threads in this process (after ``import_keras``), or the number it will use."""
    return _threads or load_settings().tf_threads


_nice: int | None = None  # set by configure(); else read from the environment
_scan_lock = threading.Lock()
_lowered: set[int] = set()  # native ids of the threads already lowered
_tasks_seen = 0  # how many threads the process had at the last look


def yield_to_web_server() -> None:
    """Run TensorFlow's compute threads ``Settings.training_nice`` below the process (Linux only; elsewhere nothing).

    Called when a training's turn begins and between its batches. TensorFlow makes its threads (named ``tf_…``)
    when the process's first op runs — in a training or on a page — so the process's threads are listed again
    whenever their number changed (a few microseconds otherwise). The trainings' own Python threads keep the
    process's priority: they hold the interpreter lock the pages need, and a lowered holder would keep pages
    waiting. A lowered thread is never raised back (that needs privileges). Pages' own TensorFlow work (a
    prediction) runs on the same pool, so it, too, computes at the training's priority.
    """
    global _tasks_seen
    if not sys.platform.startswith("linux") or _training_nice() <= 0:
        return
    with _scan_lock:
        try:
            tasks = os.listdir("/proc/self/task")
        except OSError:
            return
        if len(tasks) == _tasks_seen:
            return
        _tasks_seen = len(tasks)
        live = {int(task) for task in tasks}
        _lowered.intersection_update(live)  # an ended thread's id may be reused by a new one
        for tid in live - _lowered:
            try:
                with open(f"/proc/self/task/{tid}/comm") as file:
                    name = file.read().strip()
            except OSError:
                continue  # ended meanwhile
            if name.startswith("tf_"):
                _lower(tid, _target_nice())


@cache
def _training_nice() -> int:
    return _nice if _nice is not None else load_settings().training_nice


@cache
def _target_nice() -> int:
    """The process's own priority (its main thread's, as started) lowered by ``training_nice``; 19 is the lowest."""
    return min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + _training_nice())


def _lower(tid: int, nice: int) -> None:
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        return  # ended meanwhile, or not allowed here: training then competes as before
    _lowered.add(tid)


@cache
def cpu_has_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX): only then can mixed bfloat16 be faster.

    Elsewhere TensorFlow emulates it, slower than float32. Read from /proc/cpuinfo (Linux); False where there is none.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


@contextlib.contextmanager
def dtype_policy(name: str):
    """Keras's dtype policy ('float32', 'mixed_bfloat16', …) for the layers built inside, on this thread only.

    Keras keeps the policy per thread; layers take it when they are made, so it is restored afterwards.
    """
    keras = import_keras()
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(before)


def gpu_names() -> list[str]:
    """Names of the GPUs TensorFlow can see (empty on CPU-only hosts)."""
    import_keras()
    import tensorflow as tf

    return [device.name for device in tf.config.list_physical_devices("GPU")]
