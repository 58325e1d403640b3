"""Input pipelines for training: tf.data over shared arrays, with shuffling, augmentation and prefetch."""

from __future__ import annotations

import threading
import weakref

import numpy as np

from dcnn_core.runtime import import_keras
from dcnn_core.training.config import Augmentation, TrainConfig


def augmentation_layers(augmentation: Augmentation, seed: int):
    """Keras preprocessing layers for ``augmentation``, or None when nothing is switched on."""
    if not augmentation.active:
        return None
    keras = import_keras()
    layers = keras.layers
    steps = []
    if augmentation.flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed))
    if augmentation.rotation > 0:
        steps.append(layers.RandomRotation(augmentation.rotation, fill_mode="constant", seed=seed + 1))
    if augmentation.zoom > 0:
        steps.append(layers.RandomZoom(augmentation.zoom, fill_mode="constant", seed=seed + 2))
    if augmentation.shift > 0:
        steps.append(layers.RandomTranslation(augmentation.shift, augmentation.shift, fill_mode="constant", seed=seed + 3))
    if augmentation.contrast > 0:
        steps.append(layers.RandomContrast(augmentation.contrast, value_range=(0, 255), seed=seed + 4))
    return keras.Sequential(steps, name="augmentation")


def augment_preview(images: np.ndarray, augmentation: Augmentation, copies: int, seed: int) -> np.ndarray:
    """``copies`` augmented versions of each image, uint8, (len(images) * copies, H, W, C)."""
    pipeline = augmentation_layers(augmentation, seed)
    batch = np.repeat(np.asarray(images, np.float32), copies, axis=0)
    if pipeline is None:
        return batch.astype(np.uint8)
    return np.clip(np.asarray(pipeline(batch, training=True)), 0, 255).astype(np.uint8)


_shared_lock = threading.Lock()
_shared: dict[int, tuple[weakref.ref, object, object]] = {}  # id(images) → (weak ref, image tensor, label tensor)


def shared_tensors(x: np.ndarray, y: np.ndarray):
    """One tensor copy of a data set's arrays for every job of the process (gone with the arrays)."""
    import tensorflow as tf

    key = id(x)
    with _shared_lock:
        entry = _shared.get(key)
        if entry is not None and entry[0]() is x:
            return entry[1], entry[2]
        with tf.device("/CPU:0"):
            tensors = tf.constant(x), tf.constant(y.astype(np.int32))
        _shared[key] = (weakref.ref(x), *tensors)
        weakref.finalize(x, _forget, key)
        return tensors


def _forget(key: int) -> None:
    with _shared_lock:
        _shared.pop(key, None)


def _without_autotune(data):
    """No tf.data autotuning and no added parallel map: no helper threads beyond one prefetch per pipeline.

    In a room, dozens of paused pipelines live at once. With autotuning each has a model thread
    and a parallel-map runner; seen here (gdb, 10 attendees): the job holding the turn sat idle in
    the iterator's destructor at each epoch's end, waiting for those threads to wind down. A gather of
    32 small images needs neither.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_optimization.map_parallelization = False
    return data.with_options(options)


def training_dataset(x: np.ndarray, y: np.ndarray, indices: np.ndarray, config: TrainConfig, images_per_epoch: int | None = None):
    """Shuffled, batched, optionally augmented, prefetched batches of ``x[indices]``, gathered from shared tensors.

    Only the indices are shuffled (a few bytes each): no job copies the images. With
    ``images_per_epoch`` each epoch sees a fresh random subset of that many images.
    """
    import tensorflow as tf

    images, labels = shared_tensors(x, y)
    data = tf.data.Dataset.from_tensor_slices(np.asarray(indices, np.int32))
    data = data.shuffle(len(indices), seed=config.seed, reshuffle_each_iteration=True)
    if images_per_epoch is not None and images_per_epoch < len(indices):
        data = data.take(images_per_epoch)
    data = data.batch(config.batch_size).map(lambda batch: (tf.gather(images, batch), tf.gather(labels, batch)))
    pipeline = augmentation_layers(config.augmentation, config.seed)
    if pipeline is not None:
        data = data.map(lambda images, labels: (pipeline(tf.cast(images, tf.float32), training=True), labels))
    return _without_autotune(data.prefetch(2))


def evaluation_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, indices: np.ndarray | None = None):
    """Batches of ``x[indices]`` (all of ``x`` without indices), in order."""
    import tensorflow as tf

    if indices is None:
        return _without_autotune(tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(2))
    images, labels = shared_tensors(x, y)
    data = tf.data.Dataset.from_tensor_slices(np.asarray(indices, np.int32)).batch(batch_size)
    return _without_autotune(data.map(lambda batch: (tf.gather(images, batch), tf.gather(labels, batch))).prefetch(2))


def batches_per_epoch(train_images: int, batch_size: int, images_per_epoch: int | None = None) -> int:
    seen = train_images if images_per_epoch is None else min(train_images, images_per_epoch)
    return -(-seen // batch_size)


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Weights proportional to 1/frequency, averaging 1 over the images (absent classes get 1)."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 1.0)
    return {index: float(weight) for index, weight in enumerate(weights)}
