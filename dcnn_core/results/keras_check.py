"""Read a ``.keras`` file's config.json and count what the model would cost, without building it.

Keras allocates every weight as soon as it builds a model, so a tiny file asking for
``Dense(150000)`` costs gigabytes before any check on the built model can run. Here the
layers are walked as plain data: only allow-listed layer classes, shapes followed from the
input, parameters counted arithmetically, every layer's output size bounded. The only nodes
not from ``keras.layers`` are the two arithmetic operations keras.applications write (tensors
and plain numbers in); a registered (custom) class or any other module is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_LAYERS = 300
MAX_SIZE = 100_000_000  # any one number in a layer's config; the parameter limit refuses far less
MAX_ACTIVATION_VALUES = 8_000_000  # one image's output of one layer (32 MB as float32)
WEIGHT_BYTES_FLOOR = 2  # bytes per parameter at least (float16 weights)
WEIGHT_BYTES_CEILING = 16  # float32 weights plus up to three optimizer slots per weight
WEIGHTS_OVERHEAD_BYTES = 64 * 1024  # the HDF5 file's own headers
WEIGHTS_OVERHEAD_PER_LAYER = 8 * 1024

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
LAYERS_MODULE = "keras.layers"
OPS_MODULE = "keras.src.ops.numpy"  # arithmetic written as nodes, e.g. MobileNetV3's ``x + 3.0`` and ``x * (1 / 6)``
ALLOWED_OPS = frozenset({"Add", "Multiply"})
MODEL_CLASSES = ("Functional", "Sequential")


class ConfigRefused(ValueError):
    """The model described by config.json is not accepted; the message says why, for the user."""


@dataclass(frozen=True)
class ModelSummary:
    """What config.json describes, counted without Keras."""

    input_shape: tuple[int, ...]  # one image, without the batch axis
    output_shape: tuple[int, ...]
    parameters: int
    layers: int


def summarise(config: object) -> ModelSummary:
    """Shapes and parameter count of a Sequential or Functional model's config.json; ``ConfigRefused`` if unusable."""
    if not isinstance(config, dict) or config.get("class_name") not in MODEL_CLASSES or not isinstance(config.get("config"), dict):
        raise ConfigRefused("it is not a Keras Sequential or Functional model")
    layers = config["config"].get("layers")
    if not isinstance(layers, list) or not layers:
        raise ConfigRefused("its config.json lists no layers")
    if len(layers) > MAX_LAYERS:
        raise ConfigRefused(f"it has {len(layers):,} layers; the limit is {MAX_LAYERS}")
    for layer in layers:
        _check_allowed(layer)
    if config["class_name"] == "Sequential":
        return _sequential(layers, config)
    return _functional(layers, config["config"])


def check_weights_size(summary: ModelSummary, weights_bytes: int) -> None:
    """The weights file must be about as large as the parameters the config declares."""
    ceiling = WEIGHT_BYTES_CEILING * summary.parameters + WEIGHTS_OVERHEAD_BYTES + WEIGHTS_OVERHEAD_PER_LAYER * summary.layers
    if weights_bytes > ceiling or weights_bytes < WEIGHT_BYTES_FLOOR * summary.parameters:
        raise ConfigRefused(
            f"its weights file ({weights_bytes:,} bytes) does not match the {summary.parameters:,} parameters its config declares"
        )


# --- walking the layers ------------------------------------------------------------------------------


def _check_allowed(layer: object) -> None:
    if not isinstance(layer, dict) or not isinstance(layer.get("config"), dict):
        raise ConfigRefused("its config.json has a layer that is not described as Keras writes it")
    kind, module = layer.get("class_name"), layer.get("module", LAYERS_MODULE)
    if kind == "Lambda":
        raise ConfigRefused(
            "it contains a Lambda layer: Python code inside a model file could run on this server. Rebuild it from standard Keras layers"
        )
    if module == OPS_MODULE:
        if kind not in ALLOWED_OPS:
            raise ConfigRefused(f"it uses the operation {str(kind)[:40]!r}, which this app does not accept")
    elif kind not in ALLOWED_LAYERS:
        raise ConfigRefused(f"it uses the layer type {str(kind)[:40]!r}, which this app does not accept")
    if module != LAYERS_MODULE and module != OPS_MODULE or layer.get("registered_name") not in (None, kind):
        raise ConfigRefused(f"its layer {str(kind)[:40]!r} comes from outside Keras's own layers (custom code is not accepted)")
    if layer["config"].get("data_format", "channels_last") != "channels_last":
        raise ConfigRefused("it uses channels-first layers; only channels-last models are accepted")


def _input_shape(layer: dict) -> tuple[int, ...]:
    config = layer["config"]
    shape = config.get("batch_shape") or config.get("batch_input_shape")
    if not isinstance(shape, list) or len(shape) < 2 or not all(_is_size(v) for v in shape[1:]):
        raise ConfigRefused("its input has no fixed image shape")
    return tuple(int(v) for v in shape[1:])


def _sequential(layers: list[dict], config: dict) -> ModelSummary:
    if layers[0]["class_name"] == "InputLayer":
        shape, rest = _input_shape(layers[0]), layers[1:]
    else:
        build = config.get("build_config") or {}
        shape, rest = _input_shape({"config": {"batch_shape": build.get("input_shape")}}), layers
    first, parameters = shape, 0
    for layer in rest:
        if layer["class_name"] in _MERGE | {"Concatenate", "InputLayer"}:
            raise ConfigRefused("its Sequential model has a layer that needs several inputs")
        shape, count = _layer(layer, [shape])
        parameters += count
    return ModelSummary(first, shape, parameters, len(layers))


def _functional(layers: list[dict], config: dict) -> ModelSummary:
    shapes: dict[str, tuple[int, ...]] = {}
    inputs: list[tuple[int, ...]] = []
    parameters = 0
    for layer in layers:
        name = layer.get("name", layer["config"].get("name"))
        if not isinstance(name, str) or name in shapes:
            raise ConfigRefused("its layers do not have distinct names")
        if layer["class_name"] == "InputLayer":
            shapes[name] = _input_shape(layer)
            inputs.append(shapes[name])
            continue
        sources = [shapes[source] for source in _sources(layer, shapes)]
        shapes[name], count = _operation(layer, sources) if layer.get("module") == OPS_MODULE else _layer(layer, sources)
        parameters += count
    outputs = [shapes.get(_history_name(item)) for item in _as_list(config.get("output_layers"))]
    if len(inputs) != 1 or len(outputs) != 1 or outputs[0] is None:
        raise ConfigRefused("it must have one image input and one output")
    return ModelSummary(inputs[0], outputs[0], parameters, len(layers))


def _as_list(value) -> list:
    """``output_layers`` is ``["name", 0, 0]`` for one output and a list of those for several."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        return [value]
    return value if isinstance(value, list) else []


def _history_name(item) -> str | None:
    return item[0] if isinstance(item, list) and item and isinstance(item[0], str) else None


def _sources(layer: dict, known: dict[str, tuple[int, ...]]) -> list[str]:
    """The names of the layers feeding ``layer``, each already seen (a layer used twice is refused)."""
    nodes = layer.get("inbound_nodes")
    if not isinstance(nodes, list) or len(nodes) != 1 or not isinstance(nodes[0], dict):
        raise ConfigRefused(f"its layer {str(layer.get('name'))[:40]!r} is used more or less than once")
    found: list[str] = []
    stack = [nodes[0].get("args")]
    while stack:
        item = stack.pop()
        if isinstance(item, dict) and item.get("class_name") == "__keras_tensor__":
            history = (item.get("config") or {}).get("keras_history")
            found.append(_history_name(history) or "")
        elif isinstance(item, list):
            stack.extend(reversed(item))
    if not found or any(name not in known for name in found):
        raise ConfigRefused(f"its layer {str(layer.get('name'))[:40]!r} takes inputs that come from nowhere")
    return found


# --- one layer -----------------------------------------------------------------------------------


def _operation(layer: dict, shapes: list[tuple[int, ...]]) -> tuple[tuple[int, ...], int]:
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


def _is_size(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SIZE


def _int(config: dict, key: str, default=None) -> int:
    value = config.get(key, default)
    if not _is_size(value):
        raise ConfigRefused(f"a layer's {key} is not a positive whole number")
    return int(value)


def _pair(config: dict, key: str, default) -> tuple[int, int]:
    value = config.get(key, default)
    value = [value, value] if isinstance(value, int) else value
    if not isinstance(value, list | tuple) or len(value) != 2 or not all(_is_size(v) for v in value):
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


def _layer(layer: dict, shapes: list[tuple[int, ...]]) -> tuple[tuple[int, ...], int]:
    """Output shape and parameter count of one layer, from its config and its inputs' shapes."""
    kind, config = layer["class_name"], layer["config"]
    if len(shapes) != 1 and kind not in _MERGE | {"Concatenate"}:
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
        if not all(_is_size(v) for v in target) or math.prod(target) != math.prod(shape):
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
