"""Look inside a trained network: feature maps, first-layer filters, Grad-CAM and saliency.

Every function takes one uint8 image (H, W, C) — the model's own input, before
its Rescaling layer — and calls the model directly (``model(x, training=False)``),
never ``model.predict`` per image. The small Keras models that expose inner
layers are built once per model and kept while the model lives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dcnn_core.results.submodels import cached_submodel

CONV_CLASSES = ("Conv2D", "SeparableConv2D")
GRAD_CAM, SALIENCY = "grad-cam", "saliency"


@dataclass(frozen=True)
class Heatmap:
    """Where in the image the evidence for one class lies."""

    values: np.ndarray  # (H, W) float32 in [0, 1], at the input resolution
    method: str  # GRAD_CAM, or SALIENCY when the model has no convolution (or it was asked for)
    layer: str | None  # the convolution layer Grad-CAM used
    note: str  # one sentence for the page, e.g. why saliency was used instead


def conv_layers(model) -> list:
    """The Conv2D and SeparableConv2D layers of ``model``, input to output."""
    return [layer for layer in model.layers if type(layer).__name__ in CONV_CLASSES]


def _batch(model, image: np.ndarray) -> np.ndarray:
    """One image as a float32 batch of one, checked against the model's input shape."""
    image = np.asarray(image)
    expected = tuple(model.input_shape[1:])
    if image.shape != expected:
        raise ValueError(f"The image is {image.shape} but the model takes {expected}.")
    return image[None].astype(np.float32)


def feature_maps(model, image: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The output of every convolution layer for one image: ``[(layer name, (H, W, C) array)]``."""
    layers = conv_layers(model)
    if not layers:
        return []
    probe = cached_submodel(model, "feature_maps", lambda: [layer.output for layer in layers])
    outputs = probe(_batch(model, image), training=False)
    outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
    return [(layer.name, np.asarray(output)[0]) for layer, output in zip(layers, outputs, strict=True)]


def first_layer_filters(model) -> np.ndarray:
    """The first convolution's kernels, (k, k, in, out), each filter scaled to 0..1 for display.

    A separable convolution's first step is depthwise, so its depthwise kernels are returned.
    """
    layers = conv_layers(model)
    if not layers:
        raise ValueError("This model has no convolution layer, so it has no filters to show.")
    layer = layers[0]
    kernel = layer.depthwise_kernel if type(layer).__name__ == "SeparableConv2D" else layer.kernel
    weights = np.asarray(kernel, dtype=np.float32)
    low = weights.min(axis=(0, 1, 2), keepdims=True)
    span = weights.max(axis=(0, 1, 2), keepdims=True) - low
    return np.where(span > 0, (weights - low) / np.where(span > 0, span, 1), 0.5).astype(np.float32)


def _head_tensor(model):
    """The logits' source: the final Dense layer's input when there is one, else the output."""
    last = model.layers[-1]
    return last.input if type(last).__name__ == "Dense" else model.output


def _class_score(model, head, class_index: int):
    """The class's logit (before softmax), or its log-probability when the logits are out of reach."""
    import tensorflow as tf

    last = model.layers[-1]
    if type(last).__name__ == "Dense":
        logits = tf.matmul(head, last.kernel) + (last.bias if last.use_bias else 0.0)
        return logits[:, class_index]
    return tf.math.log(tf.clip_by_value(head[:, class_index], 1e-7, 1.0))


def _check_class(model, class_index: int) -> int:
    classes = int(model.output_shape[-1])
    if not 0 <= int(class_index) < classes:
        raise ValueError(f"The class must be from 0 to {classes - 1}; got {class_index}.")
    return int(class_index)


def _unit_range(values) -> np.ndarray:
    values = np.clip(np.asarray(values, dtype=np.float32), 0, None)
    top = float(values.max()) if values.size else 0.0
    return values / top if top > 0 else np.zeros_like(values)


def saliency(model, image: np.ndarray, class_index: int) -> Heatmap:
    """How strongly each pixel sways the class's score: |∂ score / ∂ pixel|, largest over channels."""
    import tensorflow as tf

    class_index = _check_class(model, class_index)
    head_model = cached_submodel(model, "head", lambda: _head_tensor(model))
    x = tf.convert_to_tensor(_batch(model, image))
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = _class_score(model, head_model(x, training=False), class_index)
    gradient = tape.gradient(score, x)
    values = _unit_range(tf.reduce_max(tf.abs(gradient), axis=-1)[0])
    return Heatmap(values, SALIENCY, None, "Saliency: how much each pixel changes the class's score.")


def grad_cam(model, image: np.ndarray, class_index: int) -> Heatmap:
    """Grad-CAM (Selvaraju et al. 2017) on the last convolution, resized to the input.

    A model without a convolution falls back to ``saliency``; ``Heatmap.method`` says which was used.
    """
    import tensorflow as tf

    class_index = _check_class(model, class_index)
    layers = conv_layers(model)
    if not layers:
        fallback = saliency(model, image, class_index)
        return Heatmap(fallback.values, SALIENCY, None, "This model has no convolution layer, so saliency is shown instead of Grad-CAM.")
    last_conv = layers[-1]
    probe = cached_submodel(model, f"grad_cam_{last_conv.name}", lambda: [last_conv.output, _head_tensor(model)])
    x = _batch(model, image)
    with tf.GradientTape() as tape:
        activations, head = probe(x, training=False)
        score = _class_score(model, head, class_index)
    gradient = tape.gradient(score, activations)
    weights = tf.reduce_mean(gradient, axis=(1, 2), keepdims=True)  # one weight per channel
    cam = tf.nn.relu(tf.reduce_sum(activations * weights, axis=-1, keepdims=True))
    height, width = x.shape[1:3]
    resized = tf.image.resize(cam, (height, width), method="bilinear")[0, :, :, 0]
    return Heatmap(_unit_range(resized), GRAD_CAM, last_conv.name, f"Grad-CAM on the last convolution, '{last_conv.name}'.")
