"""Read a ``.keras`` file's config.json and count what the model would cost, without building it.

Keras allocates every weight as soon as it builds a model, so a tiny file asking for
``Dense(150000)`` costs gigabytes before any check on the built model can run. Here the
layers are walked as plain data: only allow-listed layer classes, shapes followed from the
input, parameters counted arithmetically, every layer's output size bounded. The only nodes
not from ``keras.layers`` are the two arithmetic operations keras.applications write (tensors
and plain numbers in); a registered (custom) class or any other module is refused. This module
checks each layer's class and walks the graph; what one layer does to a shape, and the list of
layer classes understood, are in ``keras_layers``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dcnn_core.results import keras_layers
from dcnn_core.results.keras_layers import ConfigRefused

MAX_LAYERS = 300
WEIGHT_BYTES_FLOOR = 2  # bytes per parameter at least (float16 weights)
WEIGHT_BYTES_CEILING = 16  # float32 weights plus up to three optimizer slots per weight
WEIGHTS_OVERHEAD_BYTES = 64 * 1024  # the HDF5 file's own headers
WEIGHTS_OVERHEAD_PER_LAYER = 8 * 1024

LAYERS_MODULE = "keras.layers"
OPS_MODULE = "keras.src.ops.numpy"  # arithmetic written as nodes, e.g. MobileNetV3's ``x + 3.0`` and ``x * (1 / 6)``
ALLOWED_OPS = frozenset({"Add", "Multiply"})
MODEL_CLASSES = ("Functional", "Sequential")


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
    elif kind not in keras_layers.ALLOWED_LAYERS:
        raise ConfigRefused(f"it uses the layer type {str(kind)[:40]!r}, which this app does not accept")
    if module != LAYERS_MODULE and module != OPS_MODULE or layer.get("registered_name") not in (None, kind):
        raise ConfigRefused(f"its layer {str(kind)[:40]!r} comes from outside Keras's own layers (custom code is not accepted)")
    if layer["config"].get("data_format", "channels_last") != "channels_last":
        raise ConfigRefused("it uses channels-first layers; only channels-last models are accepted")


def _input_shape(layer: dict) -> tuple[int, ...]:
    config = layer["config"]
    shape = config.get("batch_shape") or config.get("batch_input_shape")
    if not isinstance(shape, list) or len(shape) < 2 or not all(keras_layers.is_size(v) for v in shape[1:]):
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
        if layer["class_name"] in keras_layers.MULTI_INPUT_LAYERS | {"InputLayer"}:
            raise ConfigRefused("its Sequential model has a layer that needs several inputs")
        shape, count = keras_layers.layer_shape(layer, [shape])
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
        measure = keras_layers.operation_shape if layer.get("module") == OPS_MODULE else keras_layers.layer_shape
        shapes[name], count = measure(layer, sources)
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
