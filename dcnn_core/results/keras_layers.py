"""What one allow-listed Keras layer makes of its inputs, counted from its config.json entry alone.

``keras_check`` walks a model's layers as plain data; for each it asks here for the output
shape and the number of parameters, computed arithmetically from the layer's config and its
inputs' shapes, never by building it. The layer classes understood are listed here
(``ALLOWED_LAYERS``), with the arithmetic operations keras.applications write as nodes; every
size in a config is bounded, and so is every layer's output. Anything not understood raises
``ConfigRefused`` with a message for the user.
"""

from __future__ import annotations

import math

MAX_SIZE = 100_000_000  # any one number in a layer's config; the parameter limit refuses far less
MAX_ACTIVATION_VALUES = 8_000_000  # one image's output of one layer (32 MB as float32)

_SAME_SHAPE = {
    "Activation", "ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax", "Rescaling", "Dropout", "SpatialDropout2D", "GaussianNoise",
    "GaussianDropout", "Identity", "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
    "RandomBrightness",
}  # fmt: skip
_MERGE = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
_SPATIAL = {"Conv2D", "DepthwiseConv2D", "SeparableConv2D", "MaxPooling2D", "AveragePooling2D", "ZeroPadding2D"}
_OTHER = {"InputLayer", "Dense", "Flatten", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "BatchNormalization",
          "LayerNormalization", "Normalization", "Concatenate", "Reshape", "Resizing"}  # fmt: skip
ALLOWED_LAYERS = frozenset(_SAME_SHAPE | _MERGE | _SPATIAL | _OTHER)
MULTI_INPUT_LAYERS = frozenset(_MERGE | {"Concatenate"})  # every other layer takes exactly one input


class ConfigRefused(ValueError):
    """The model described by config.json is not accepted; the message says why, for the user."""


def operation_shape(layer: dict, shapes: list[tuple[int, ...]]) -> tuple[tuple[int, ...], int]:
    """An arithmetic node (``x + 3.0``, ``x * y``): tensors and plain numbers in, their broadcast shape out."""
    node = layer["inbound_nodes"][0]
    constants = [arg for arg in node.get("args") or [] if not (isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__")]
    if node.get("kwargs") or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in constants):
        raise ConfigRefused(f"its {layer['class_name']} operation takes something other than tensors and numbers")
    return _broadcast(layer["class_name"], shapes), 0


def _broadcast(kind: str, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The shape of an element-wise result: sizes line up from the right, a size of 1 stretches."""
    rank = max(len(shape) for shape in shapes)
    output = []
    for axis in range(-rank, 0):
        sizes = {shape[axis] for shape in shapes if len(shape) >= -axis} - {1}
        if len(sizes) > 1:
            raise ConfigRefused(f"its {kind} layer combines inputs of shapes {shapes} that do not line up")
        output.append(sizes.pop() if sizes else 1)
    return tuple(output)


def is_size(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SIZE


def _int(config: dict, key: str, default=None) -> int:
    value = config.get(key, default)
    if not is_size(value):
        raise ConfigRefused(f"a layer's {key} is not a positive whole number")
    return int(value)


def _pair(config: dict, key: str, default) -> tuple[int, int]:
    value = config.get(key, default)
    value = [value, value] if isinstance(value, int) else value
    if not isinstance(value, list | tuple) or len(value) != 2 or not all(is_size(v) for v in value):
        raise ConfigRefused(f"a layer's {key} is not a pair of positive whole numbers")
    return int(value[0]), int(value[1])


def _spatial_size(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return math.ceil(size / stride)
    if padding == "valid":
        return (size - kernel) // stride + 1
    raise ConfigRefused(f"a layer's padding {str(padding)[:20]!r} is not 'same' or 'valid'")


def _image(shape: tuple[int, ...], kind: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ConfigRefused(f"a {kind} layer gets an input of shape {shape}, not an image")
    return shape  # type: ignore[return-value]


def layer_shape(layer: dict, shapes: list[tuple[int, ...]]) -> tuple[tuple[int, ...], int]:
    """Output shape and parameter count of one layer, from its config and its inputs' shapes."""
    kind, config = layer["class_name"], layer["config"]
    if len(shapes) != 1 and kind not in MULTI_INPUT_LAYERS:
        raise ConfigRefused(f"its {kind} layer takes {len(shapes)} inputs instead of one")
    output, parameters = _shape_and_parameters(kind, config, shapes)
    if not output or any(size < 1 for size in output) or math.prod(output) > MAX_ACTIVATION_VALUES:
        raise ConfigRefused(f"its {kind} layer would produce an output of shape {output}, which is empty or far too large")
    return output, parameters


def _shape_and_parameters(kind: str, config: dict, shapes: list[tuple[int, ...]]) -> tuple[tuple[int, ...], int]:
    shape = shapes[0]
    if kind == "PReLU":
        return shape, _prelu_parameters(config, shape)
    if kind in _SAME_SHAPE:
        return shape, 0
    if kind in _MERGE or kind == "Concatenate":
        return _merge(kind, config, shapes)
    if kind == "Normalization":
        return shape, _normalization_parameters(config, shape)
    if kind == "Resizing":
        height, width, channels = _image(shape, kind)
        return (_int(config, "height"), _int(config, "width"), channels), 0
    if kind in ("BatchNormalization", "LayerNormalization"):
        scale_and_offset = bool(config.get("center", True)) + bool(config.get("scale", True))
        moving = 2 if kind == "BatchNormalization" else 0  # moving mean and variance
        return shape, shape[-1] * (scale_and_offset + moving)
    if kind == "Dense":
        units = _int(config, "units")
        return (*shape[:-1], units), shape[-1] * units + (units if config.get("use_bias", True) else 0)
    if kind == "Flatten":
        return (math.prod(shape),), 0
    if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        height, width, channels = _image(shape, kind)
        return ((1, 1, channels) if config.get("keepdims") else (channels,)), 0
    if kind == "Reshape":
        target = tuple(config.get("target_shape") or ())
        if not all(is_size(v) for v in target) or math.prod(target) != math.prod(shape):
            raise ConfigRefused("its Reshape layer's target shape does not hold the same number of values")
        return target, 0
    if kind == "ZeroPadding2D":
        return _zero_padding(config, shape), 0
    return _convolution_or_pooling(kind, config, _image(shape, kind))


def _prelu_parameters(config: dict, shape: tuple[int, ...]) -> int:
    """One slope per value, except along ``shared_axes`` (counted from 1, after the batch axis)."""
    shared = config.get("shared_axes") or []
    shared = [shared] if isinstance(shared, int) else shared
    if not isinstance(shared, list) or not all(isinstance(axis, int) and 1 <= axis <= len(shape) for axis in shared):
        raise ConfigRefused("its PReLU layer's shared axes are not understood")
    return math.prod(size for axis, size in enumerate(shape, start=1) if axis not in shared)


def _normalization_parameters(config: dict, shape: tuple[int, ...]) -> int:
    """Adapted mean and variance along ``axis`` (counted with the batch axis) and the sample count; none when fixed in the config."""
    if config.get("mean") is not None or config.get("variance") is not None:
        return 0
    axes = config.get("axis", -1)
    axes = [] if axes is None else [axes] if isinstance(axes, int) else axes
    if not isinstance(axes, list) or not all(_is_axis(a, len(shape)) for a in axes):
        raise ConfigRefused("its Normalization layer's axis is not understood")
    kept = {a if a > 0 else len(shape) + 1 + a for a in axes}
    return 2 * math.prod(shape[a - 1] for a in kept) + 1


def _is_axis(value, rank: int) -> bool:
    """An axis of a tensor of ``rank`` image dimensions plus the batch axis, other than the batch axis."""
    return isinstance(value, int) and not isinstance(value, bool) and value != 0 and -rank <= value <= rank


def _merge(kind: str, config: dict, shapes: list[tuple[int, ...]]) -> tuple[tuple[int, ...], int]:
    if len(shapes) < 2:
        raise ConfigRefused(f"its {kind} layer merges fewer than two inputs")
    if kind != "Concatenate":
        return _broadcast(kind, shapes), 0  # squeeze-and-excitation multiplies (h, w, c) by (1, 1, c)
    if config.get("axis", -1) not in (-1, len(shapes[0])) or len({shape[:-1] for shape in shapes}) != 1:
        raise ConfigRefused("its Concatenate layer joins inputs that do not line up")
    return (*shapes[0][:-1], sum(shape[-1] for shape in shapes)), 0


def _zero_padding(config: dict, shape: tuple[int, ...]) -> tuple[int, ...]:
    height, width, channels = _image(shape, "ZeroPadding2D")
    padding = config.get("padding", 1)
    if isinstance(padding, int):
        padding = [[padding, padding], [padding, padding]]
    if isinstance(padding, list) and len(padding) == 2 and all(isinstance(p, int) for p in padding):
        padding = [[padding[0], padding[0]], [padding[1], padding[1]]]
    values = [v for pair in padding for v in pair] if isinstance(padding, list) and all(isinstance(p, list) for p in padding) else []
    if len(values) != 4 or not all(isinstance(v, int) and 0 <= v <= 1000 for v in values):
        raise ConfigRefused("its ZeroPadding2D layer's padding is not understood")
    top, bottom, left, right = values
    return height + top + bottom, width + left + right, channels


def _convolution_or_pooling(kind: str, config: dict, shape: tuple[int, int, int]) -> tuple[tuple[int, ...], int]:
    height, width, channels = shape
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        pool = _pair(config, "pool_size", 2)
        strides = _pair(config, "strides", None) if config.get("strides") is not None else pool
        out = [_spatial_size(size, k, s, config.get("padding", "valid")) for size, k, s in zip((height, width), pool, strides, strict=True)]
        return (*out, channels), 0
    kernel = _pair(config, "kernel_size", None)
    strides, dilation = _pair(config, "strides", 1), _pair(config, "dilation_rate", 1)
    reach = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
    out = [_spatial_size(size, k, s, config.get("padding", "valid")) for size, k, s in zip((height, width), reach, strides, strict=True)]
    window = kernel[0] * kernel[1]
    use_bias = bool(config.get("use_bias", True))
    if kind == "Conv2D":
        filters, groups = _int(config, "filters"), _int(config, "groups", 1)
        if channels % groups or filters % groups:
            raise ConfigRefused("its Conv2D layer's groups do not divide its channels")
        return (*out, filters), window * (channels // groups) * filters + (filters if use_bias else 0)
    multiplier = _int(config, "depth_multiplier", 1)
    depthwise = window * channels * multiplier
    if kind == "DepthwiseConv2D":
        return (*out, channels * multiplier), depthwise + (channels * multiplier if use_bias else 0)
    filters = _int(config, "filters")  # SeparableConv2D: depthwise, then a 1×1 convolution
    return (*out, filters), depthwise + channels * multiplier * filters + (filters if use_bias else 0)
