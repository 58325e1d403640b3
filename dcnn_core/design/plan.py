"""Expand a ModelSpec into layers, and analyse them without TensorFlow.

``expand`` gives a flat list of ``LayerNode`` — each a Keras class name, its
config and its inputs — so the analysis here, the Keras model in
``dcnn_core.design.build`` and the generated script in ``dcnn_core.design.codegen`` all
describe the same network. The analysis is plain arithmetic, so the Model page
can show shapes and counts on every slider move without importing TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from dcnn_core.design.spec import Backbone, ConvBlock, ModelSpec

BYTES_PER_FLOAT = 4
TRAINING_PASSES = 3  # a training step ≈ the forward pass plus a backward pass of about twice its cost


@dataclass(frozen=True)
class LayerNode:
    """One Keras layer: ``getattr(keras.layers, class_name)(name=name, **config)``."""

    name: str
    class_name: str
    config: dict
    inputs: tuple[str, ...]
    block: str  # the part of the design it belongs to, e.g. "Block 2" or "Head"


@dataclass(frozen=True)
class LayerInfo:
    name: str
    class_name: str
    block: str
    output_shape: tuple[int, ...]
    parameters: int
    mult_adds: int
    activation_bytes: int  # one image's output of this layer, float32


@dataclass
class Analysis:
    """Per-layer shapes and costs for one input shape, or the reason it cannot work."""

    layers: list[LayerInfo] = field(default_factory=list)
    error: str | None = None
    frozen_parameters: int = 0  # a pretrained backbone's, not trained in phase 1
    fine_tune_parameters: int = 0  # of those, trained again in phase 2 (fine-tuning)
    frozen_activation_bytes: int = 0  # a backbone's inner activations per image: computed, not kept for a backward pass

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def total_parameters(self) -> int:
        return sum(layer.parameters for layer in self.layers)

    @property
    def trainable_parameters(self) -> int:
        return self.total_parameters - self.frozen_parameters

    @property
    def total_mult_adds(self) -> int:
        return sum(layer.mult_adds for layer in self.layers)

    @property
    def activation_bytes(self) -> int:
        return sum(layer.activation_bytes for layer in self.layers)


class DesignError(ValueError):
    """A design that cannot be built for the chosen input; the message names the layer."""


# --- expansion -------------------------------------------------------------------------------


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[LayerNode] = []

    def add(self, name: str, class_name: str, inputs: str | tuple[str, ...], block: str, **config) -> str:
        inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
        self.nodes.append(LayerNode(name, class_name, config, inputs, block))
        return name


def _conv(b: _Builder, name: str, x: str, block: ConvBlock, label: str, stride: int, activate: bool) -> str:
    """A convolution, then batch norm and activation as the block asks."""
    class_name = "SeparableConv2D" if block.kind == "separable" else "Conv2D"
    activation = block.activation if (activate and not block.batch_norm) else None
    x = b.add(
        name, class_name, x, label,
        filters=block.filters, kernel_size=block.kernel_size, strides=stride,
        padding=block.padding, activation=activation, use_bias=not block.batch_norm,
    )  # fmt: skip
    if block.batch_norm:
        x = b.add(f"{name}_bn", "BatchNormalization", x, label)
        if activate:
            x = b.add(f"{name}_{block.activation}", "Activation", x, label, activation=block.activation)
    return x


def _block(b: _Builder, number: int, x: str, block: ConvBlock) -> str:
    label = f"Block {number}"
    prefix = f"block{number}"
    block_input = x
    for layer in range(1, block.conv_layers + 1):
        is_last = layer == block.conv_layers
        stride = block.stride if layer == 1 else 1
        # In a residual block the last conv's activation comes after the addition.
        activate = not (block.kind == "residual" and is_last)
        x = _conv(b, f"{prefix}_conv{layer}", x, block, label, stride, activate)
    if block.kind == "residual":
        shortcut = b.add(
            f"{prefix}_shortcut", "Conv2D", block_input, label,
            filters=block.filters, kernel_size=1, strides=block.stride, padding="same", activation=None,
            use_bias=True,
        )  # fmt: skip
        x = b.add(f"{prefix}_add", "Add", (x, shortcut), label)
        x = b.add(f"{prefix}_{block.activation}", "Activation", x, label, activation=block.activation)
    if block.pooling != "none":
        pool_class = "MaxPooling2D" if block.pooling == "max" else "AveragePooling2D"
        x = b.add(f"{prefix}_pool", pool_class, x, label, pool_size=block.pool_size)
    if block.dropout > 0:
        x = b.add(f"{prefix}_dropout", "Dropout", x, label, rate=float(block.dropout))
    return x


def _backbone(b: _Builder, x: str, backbone: Backbone, channels: int) -> str:
    """Resize, grey to RGB, then the backbone as one node (``dcnn_core.design.backbones.attach`` builds it)."""
    if channels not in (1, 3):
        raise DesignError(f"A pretrained backbone takes grey or RGB images; these have {channels} channels.")
    x = b.add("resize", "Resizing", x, "Input", height=backbone.input_size, width=backbone.input_size)
    if channels == 1:
        x = b.add("grayscale_to_rgb", "Concatenate", (x, x, x), "Input", axis=-1)
    return b.add("backbone", "Backbone", x, "Backbone", backbone=asdict(backbone))


def expand(spec: ModelSpec, num_classes: int, channels: int = 3) -> list[LayerNode]:
    """The layers of ``spec`` in order; the first node is the input (``channels``: the images')."""
    if num_classes < 2:
        raise DesignError(f"The output layer needs at least 2 classes; this data set has {num_classes}.")
    b = _Builder()
    x = b.add("input", "InputLayer", (), "Input")
    if spec.backbone is not None:
        x = _backbone(b, x, spec.backbone, channels)
    elif spec.rescale:
        x = b.add("rescale", "Rescaling", x, "Input", scale=1 / 255)
    for number, block in enumerate(spec.blocks, start=1):
        x = _block(b, number, x, block)
    head = spec.head
    if head.pooling == "flatten":
        x = b.add("flatten", "Flatten", x, "Head")
    else:
        pool_class = "GlobalAveragePooling2D" if head.pooling == "global_average" else "GlobalMaxPooling2D"
        x = b.add("global_pool", pool_class, x, "Head")
    for number, units in enumerate(head.dense_units, start=1):
        x = b.add(f"dense{number}", "Dense", x, "Head", units=units, activation=head.activation)
        if head.dropout > 0:
            x = b.add(f"dense{number}_dropout", "Dropout", x, "Head", rate=float(head.dropout))
    if head.dropout > 0 and not head.dense_units:
        x = b.add("head_dropout", "Dropout", x, "Head", rate=float(head.dropout))
    b.add("predictions", "Dense", x, "Output", units=num_classes, activation="softmax")
    return b.nodes


# --- analysis --------------------------------------------------------------------------------


def _conv_size(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1


def _analyse_node(node: LayerNode, shapes: list[tuple[int, ...]]) -> tuple[tuple[int, ...], int, int]:
    """Output shape, parameters and multiply-adds of one layer."""
    config, kind = node.config, node.class_name
    shape = shapes[0] if shapes else ()
    if kind == "Resizing":
        return (config["height"], config["width"], shape[-1]), 0, 0
    if kind == "Concatenate":
        return (*shape[:-1], sum(s[-1] for s in shapes)), 0, 0
    if kind == "Backbone":
        from dcnn_core.design import backbones

        try:
            cost = backbones.cost(config["backbone"]["name"], config["backbone"]["input_size"])
        except ValueError as error:
            raise DesignError(f"Backbone: {error}") from error
        return cost.output_shape, cost.parameters, cost.mult_adds
    if kind in ("Rescaling", "Activation", "Dropout", "BatchNormalization"):
        params = 4 * shape[-1] if kind == "BatchNormalization" else 0
        return shape, params, 0
    if kind in ("Conv2D", "SeparableConv2D"):
        height, width, channels = shape
        k, s, filters = config["kernel_size"], config["strides"], config["filters"]
        out_h = _conv_size(height, k, s, config["padding"])
        out_w = _conv_size(width, k, s, config["padding"])
        if out_h < 1 or out_w < 1:
            raise DesignError(
                f"{node.block}, layer '{node.name}': a {k}×{k} kernel with padding '{config['padding']}' "
                f"on a {height}×{width} input leaves no pixels. Use 'same' padding, a smaller kernel, "
                "or fewer blocks."
            )
        bias = filters if config["use_bias"] else 0
        if kind == "Conv2D":
            params = k * k * channels * filters + bias
            mult_adds = out_h * out_w * k * k * channels * filters
        else:
            params = k * k * channels + channels * filters + bias
            mult_adds = out_h * out_w * (k * k * channels + channels * filters)
        return (out_h, out_w, filters), params, mult_adds
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        height, width, channels = shape
        p = config["pool_size"]
        out_h, out_w = (height - p) // p + 1, (width - p) // p + 1
        if out_h < 1 or out_w < 1:
            raise DesignError(
                f"{node.block}, layer '{node.name}': {p}×{p} pooling on a {height}×{width} input leaves "
                "no pixels. Set this block's pooling to 'none' or use fewer blocks."
            )
        return (out_h, out_w, channels), 0, 0
    if kind == "Add":
        if len(set(shapes)) != 1:
            raise DesignError(f"{node.block}, layer '{node.name}': the skip connection's shapes differ {shapes}.")
        return shape, 0, 0
    if kind == "Flatten":
        return (math.prod(shape),), 0, 0
    if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        return (shape[-1],), 0, 0
    if kind == "Dense":
        (features,) = shape
        units = config["units"]
        return (units,), features * units + units, features * units
    raise DesignError(f"Unsupported layer type {kind}.")


def analyse(spec: ModelSpec, input_shape: tuple[int, int, int], num_classes: int, max_parameters: int | None = None) -> Analysis:
    """Shapes, parameters, multiply-adds and activation memory of every layer.

    Never raises for a bad design: ``Analysis.error`` says which layer fails and why.
    """
    result = Analysis()
    try:
        nodes = expand(spec, num_classes, channels=input_shape[-1])
    except DesignError as error:
        result.error = str(error)
        return result
    shapes: dict[str, tuple[int, ...]] = {}
    for node in nodes:
        if node.class_name == "InputLayer":
            shape, params, mult_adds = tuple(input_shape), 0, 0
        else:
            try:
                shape, params, mult_adds = _analyse_node(node, [shapes[name] for name in node.inputs])
            except DesignError as error:
                result.error = str(error)
                return result
        shapes[node.name] = shape
        result.layers.append(
            LayerInfo(node.name, node.class_name, node.block, shape, params, mult_adds, math.prod(shape) * BYTES_PER_FLOAT)
        )
    if spec.backbone is not None:
        _add_backbone_costs(result, spec.backbone)
    if max_parameters is not None and result.total_parameters > max_parameters:
        biggest = max(result.layers, key=lambda layer: layer.parameters)
        result.error = (
            f"This design has {result.total_parameters:,} parameters, above this server's limit of "
            f"{max_parameters:,}. The largest layer is '{biggest.name}' ({biggest.parameters:,}); "
            "add pooling or a block before flattening, or use fewer filters or dense units."
        )
    return result


def _add_backbone_costs(result: Analysis, backbone: Backbone) -> None:
    """Frozen and fine-tuned parameters, and the backbone's inner activations (its row shows only its output)."""
    from dcnn_core.design import backbones

    cost = backbones.cost(backbone.name, backbone.input_size)
    result.frozen_parameters = cost.parameters
    result.fine_tune_parameters = cost.fine_tune_parameters(backbone.fine_tune_layers)
    index = next(i for i, layer in enumerate(result.layers) if layer.class_name == "Backbone")
    result.layers[index] = replace(result.layers[index], activation_bytes=cost.activation_bytes)
    # Only fine-tuning keeps backbone activations for a backward pass: those of its top layers, at the output's size.
    kept = math.prod(cost.output_shape) * BYTES_PER_FLOAT * (1 + backbone.fine_tune_layers)
    result.frozen_activation_bytes = max(0, cost.activation_bytes - kept)


@dataclass(frozen=True)
class BatchCost:
    """What one training step of a batch costs the server: what its admission limits are checked against."""

    batch_size: int
    mult_adds: int  # the batch's forward multiply-adds (a training step does about TRAINING_PASSES × this)
    activation_bytes: int  # layer outputs the batch keeps until the backward pass has used them (float32)
    costliest: LayerInfo  # the layer with the most multiply-adds
    largest: LayerInfo  # the layer that keeps the most activations
    largest_bytes: int  # ... per batch


def batch_cost(analysis: Analysis, batch_size: int) -> BatchCost:
    """Multiply-adds and kept activations of one batch: per-image figures × ``batch_size`` (a frozen backbone keeps little)."""
    if not analysis.ok or not analysis.layers:
        raise ValueError("Only a design that can be built has a cost.")
    kept = {layer.name: _kept_bytes(analysis, layer) for layer in analysis.layers}
    costliest = max(analysis.layers, key=lambda layer: layer.mult_adds)
    largest = max(analysis.layers, key=lambda layer: kept[layer.name])
    return BatchCost(batch_size, analysis.total_mult_adds * batch_size, sum(kept.values()) * batch_size, costliest, largest,
                     kept[largest.name] * batch_size)  # fmt: skip


def _kept_bytes(analysis: Analysis, layer: LayerInfo) -> int:
    frozen = analysis.frozen_activation_bytes if layer.class_name == "Backbone" else 0
    return layer.activation_bytes - frozen


def format_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(["None", *map(str, shape)]) + ")"
