"""Input pipelines for training: tf.data with shuffling, augmentation and prefetch."""

from __future__ import annotations

import numpy as np

from dcnn_core.runtime import import_keras
from dcnn_core.training_config import Augmentation, TrainConfig


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


def training_dataset(x: np.ndarray, y: np.ndarray, config: TrainConfig):
    """Shuffled, batched, optionally augmented, prefetched tf.data pipeline over uint8 images."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y))
    data = data.shuffle(len(x), seed=config.seed, reshuffle_each_iteration=True).batch(config.batch_size)
    pipeline = augmentation_layers(config.augmentation, config.seed)
    if pipeline is not None:
        data = data.map(lambda images, labels: (pipeline(tf.cast(images, tf.float32), training=True), labels),
                        num_parallel_calls=tf.data.AUTOTUNE)  # fmt: skip
    return data.prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(x: np.ndarray, y: np.ndarray, batch_size: int):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Weights proportional to 1/frequency, averaging 1 over the images (absent classes get 1)."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 1.0)
    return {index: float(weight) for index, weight in enumerate(weights)}
