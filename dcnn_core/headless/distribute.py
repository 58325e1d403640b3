"""Where training runs: tf.distribute strategies for one GPU, several GPUs or several workers.

Batch size: ``TrainConfig.batch_size`` is the GLOBAL batch. One optimizer step uses that many images
in all, split evenly across the replicas (the GPUs of one machine, or every device of every worker):
a global batch of 64 on 2 GPUs is 32 images per GPU. So the same experiment takes the same steps, with
the same learning rate, on a laptop, on a GPU box and across workers.

Multi-worker training reads the cluster from the ``TF_CONFIG`` environment variable (the standard
TensorFlow format); the strategy must be made before TensorFlow runs its first operation.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from dcnn_core.runtime import import_keras

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


@dataclass(frozen=True)
class Cluster:
    """This process's place in a TF_CONFIG cluster (one worker, index 0, when there is none)."""

    workers: int = 1  # chief + workers
    task_type: str = "worker"
    task_index: int = 0
    has_chief: bool = False  # the cluster names a "chief" task besides the workers

    @property
    def is_chief(self) -> bool:
        """The task that writes files: the "chief" task, or worker 0 when the cluster has no chief."""
        return self.task_type == "chief" or (self.task_type == "worker" and self.task_index == 0 and not self.has_chief)


def cluster_from_env(environ: dict | None = None) -> Cluster:
    """Read ``TF_CONFIG``; raises ValueError when it is set but malformed."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not raw:
        return Cluster()
    try:
        config = json.loads(raw)
        cluster, task = config.get("cluster", {}), config.get("task", {})
        workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
        return Cluster(
            workers=max(1, workers),
            task_type=str(task.get("type", "worker")),
            task_index=int(task.get("index", 0)),
            has_chief=bool(cluster.get("chief")),
        )
    except (ValueError, AttributeError, TypeError) as error:
        raise ValueError(f"TF_CONFIG is not valid ({error}); see the examples in docs/headless-and-distributed.md.") from None


def visible_gpus() -> int:
    """How many GPUs TensorFlow sees (imports it)."""
    import_keras()
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def choose_strategy(name: str = "auto"):
    """A tf.distribute strategy and its description, e.g. ``(strategy, "MirroredStrategy on 2 GPUs")``.

    ``auto`` picks MultiWorkerMirroredStrategy when TF_CONFIG names more than one task, else
    MirroredStrategy when more than one GPU is visible, else TensorFlow's default strategy. The
    other names force one. Under each, ``TrainConfig.batch_size`` is the global batch, split across
    ``strategy.num_replicas_in_sync`` replicas. Call it before any other TensorFlow work in the process.
    """
    if name not in STRATEGIES:
        raise ValueError(f"The strategy must be one of {', '.join(STRATEGIES)} (got {name!r}).")
    cluster = cluster_from_env()
    import_keras()
    import tensorflow as tf

    if name == "multi_worker" or (name == "auto" and cluster.workers > 1):
        # Before anything lists devices: it configures the collective ops of the whole process.
        strategy = _multi_worker_strategy()
        replicas = strategy.num_replicas_in_sync
        workers = f"{cluster.workers} worker{'s' if cluster.workers != 1 else ''}"
        return strategy, f"MultiWorkerMirroredStrategy, {workers}, {replicas} replica{'s' if replicas != 1 else ''} in all"
    gpus = visible_gpus()
    if name == "mirrored" or (name == "auto" and gpus > 1):
        strategy = mirrored_strategy()
        return strategy, f"MirroredStrategy on {_devices(gpus)}"
    return tf.distribute.get_strategy(), f"default ({_devices(gpus)})"


def mirrored_strategy(devices: list[str] | None = None):
    """MirroredStrategy over ``devices`` (default: every GPU, or the CPU), with Keras-friendly ``reduce``."""
    import tensorflow as tf

    return _keras_friendly(tf.distribute.MirroredStrategy)(devices)


def _multi_worker_strategy():
    import tensorflow as tf

    return _keras_friendly(tf.distribute.MultiWorkerMirroredStrategy)()


def _keras_friendly(strategy_class):
    """A subclass of ``strategy_class`` whose ``reduce`` takes the calls Keras's ``fit`` makes.

    Keras 3.15 with TensorFlow 2.21, found by the two-replica and two-worker tests:
    - before training and before each validation, ``fit`` reduces the first ``(images, labels)``
      batch to learn its structure. When that batch does not split evenly (a small validation set)
      the replicas' parts differ in size and the reduce fails ("must have the same size and shape",
      "Shape mismatch in the collective instance"); across workers it also refuses a nest ("Attempt
      to convert a value (PerReplica…)") and uint8. Structure is all that call needs, so a nest gives
      the first local replica's values.
    - across workers, each step's scalar metrics are reduced with ``axis=0``, which a scalar does not
      have ("Invalid reduction dimension 0 for input with 0 dimensions"): they are reduced across
      replicas only, as a missing ``axis`` is.
    """
    import tensorflow as tf

    class KerasFriendlyStrategy(strategy_class):
        def reduce(self, reduce_op, value, axis=None):
            if isinstance(value, (tuple, list, dict)):
                return tf.nest.map_structure(lambda one: self.experimental_local_results(one)[0], value)
            if axis is not None and self.experimental_local_results(value)[0].shape.rank == 0:
                axis = None
            return super().reduce(reduce_op, value, axis)

    KerasFriendlyStrategy.__name__ = KerasFriendlyStrategy.__qualname__ = strategy_class.__name__
    return KerasFriendlyStrategy


def _devices(gpus: int) -> str:
    return "CPU" if gpus == 0 else f"{gpus} GPU{'s' if gpus != 1 else ''}"


def batch_semantics(global_batch: int, replicas: int) -> str:
    """How the global batch splits, e.g. ``"global batch 64 = 32 per replica × 2"``."""
    if replicas <= 1:
        return f"global batch {global_batch} (1 replica)"
    per_replica, rest = divmod(global_batch, replicas)
    if rest == 0:
        return f"global batch {global_batch} = {per_replica} per replica × {replicas}"
    return f"global batch {global_batch} ≈ {per_replica}–{per_replica + 1} per replica × {replicas}"


def set_mixed_precision(requested: bool) -> str:
    """Turn on float16 compute when asked and a GPU is visible; returns a line for the terminal.

    Without a GPU, mixed precision would be slower, not faster: the request is ignored, with a
    note, and training runs in float32 — so one experiment file works on every machine. Keras's
    dtype policy belongs to the calling thread: call this on the thread that builds and trains.
    """
    keras = import_keras()
    if not requested:
        return "mixed precision: off (float32)"
    if visible_gpus() == 0:
        keras.mixed_precision.set_global_policy("float32")
        return "mixed precision: requested, but no GPU is visible — ignored, training in float32"
    keras.mixed_precision.set_global_policy("mixed_float16")
    return "mixed precision: on (float16 compute, float32 weights and softmax, loss scaling)"
