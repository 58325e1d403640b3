"""TensorFlow/Keras start-up, done once per process and only when needed.

Thread counts must be set before TensorFlow runs its first op, so every module
gets Keras through ``import_keras()``.
"""

from __future__ import annotations

import gc
import os
import threading

from dcnn_core.settings import load_settings

_lock = threading.Lock()
_configured = False
_threads: int | None = None  # set by configure() before the first import; else read from the environment


def configure(tf_threads: int) -> None:
    """Use ``tf_threads`` threads per TensorFlow op (the app passes its Settings; takes effect at the first import)."""
    global _threads
    _threads = tf_threads


def import_keras():
    """Import Keras (TensorFlow backend) with the process's thread limits applied."""
    global _configured
    with _lock:
        if not _configured:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # hide C++ info lines in the server log
            os.environ.setdefault("KERAS_BACKEND", "tensorflow")
            import tensorflow as tf

            threads = _threads or load_settings().tf_threads
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(threads)
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


def gpu_names() -> list[str]:
    """Names of the GPUs TensorFlow can see (empty on CPU-only hosts)."""
    import_keras()
    import tensorflow as tf

    return [device.name for device in tf.config.list_physical_devices("GPU")]
