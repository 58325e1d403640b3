"""A network as data: typed, JSON-serialisable specs and the presets.

A ``ModelSpec`` is what the sliders edit. ``dcnn_core.design.plan.expand`` turns
it into a flat list of Keras layer descriptions, from which the analysis, the
Keras model and the generated code are all made — one source of truth.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace

from dcnn_core.design import typed_dict

BLOCK_KINDS = ("plain", "residual", "separable")
PADDINGS = ("same", "valid")
ACTIVATIONS = ("relu", "gelu", "swish", "elu", "tanh", "sigmoid")
POOLINGS = ("max", "average", "none")
HEAD_POOLINGS = ("flatten", "global_average", "global_max")
BACKBONE_NAMES = ("mobilenet_v3_small", "efficientnet_b0")  # described in dcnn_core.design.backbones.CATALOGUE
BACKBONE_WEIGHTS = ("imagenet", "random")


@dataclass
class ConvBlock:
    """A group of convolutions followed by optional pooling and dropout."""

    kind: str = "plain"  # plain convs, a residual block with a skip, or depthwise-separable convs
    conv_layers: int = 1  # convolutions in this block
    filters: int = 32  # output channels of each convolution
    kernel_size: int = 3  # square kernel side
    stride: int = 1  # stride of the block's first convolution
    padding: str = "same"  # "same" keeps the size (at stride 1); "valid" shrinks it by kernel-1
    activation: str = "relu"
    batch_norm: bool = False  # BatchNormalization after each convolution
    pooling: str = "max"  # "max", "average" or "none"
    pool_size: int = 2
    dropout: float = 0.0  # fraction of activations dropped after the block while training


@dataclass
class Head:
    """How the feature maps become class probabilities."""

    pooling: str = "flatten"  # "flatten", "global_average" or "global_max"
    dense_units: list[int] = field(default_factory=list)  # hidden dense layers before the output
    activation: str = "relu"
    dropout: float = 0.0  # dropout before each dense layer


@dataclass
class Backbone:
    """A pretrained network from keras.applications in place of the conv blocks (transfer learning)."""

    name: str = "mobilenet_v3_small"  # one of BACKBONE_NAMES
    input_size: int = 96  # images are resized to input_size × input_size inside the model
    weights: str = "imagenet"  # "imagenet" (transfer learning) or "random" (initialised at random: not transfer learning)
    fine_tune_layers: int = 10  # phase 2 trains the top N backbone layers with weights (batch norm stays frozen); 0: no phase 2
    fine_tune_epochs: int = 5  # epochs of phase 2, after the Train page's epochs of phase 1 (head only)
    fine_tune_lr_factor: float = 0.1  # phase 2's learning rate is the Train page's rate times this


@dataclass
class ModelSpec:
    """A whole network: input preprocessing, convolutional blocks, head."""

    name: str = "Custom"
    rescale: bool = True  # divide pixels by 255 inside the model, so it takes raw uint8 images
    blocks: list[ConvBlock] = field(default_factory=list)
    head: Head = field(default_factory=Head)
    backbone: Backbone | None = None  # when set, replaces the conv blocks (and the /255 rescaling: it has its own)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps({"format": "dcnn-studio-model-spec", "version": 1, "spec": self.to_dict()}, indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        """Build a spec from a dict, refusing unknown keys and bad values with a clear message."""
        spec = typed_dict.from_dict(cls, data, title="model spec")
        validate_values(spec)
        return spec

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelSpec:
        data = parse_json(text)
        if isinstance(data, dict) and data.get("format") == "dcnn-studio-model-spec":
            data = data.get("spec")
        return cls.from_dict(data)


def parse_json(text: str | bytes):
    """JSON from a user's file; anything unreadable is a ValueError a user can act on."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"This file is not valid JSON ({error}).") from error


def _check_keys(data: dict, kind: type, where: str) -> None:
    unknown = set(data) - {f.name for f in fields(kind)}
    if unknown:
        raise ValueError(f"Unknown field(s) in {where}: {', '.join(sorted(map(str, unknown)))}.")


def _check_choice(value, choices, what: str) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)} (got {value!r}).")


def _check_int(value, low: int, high: int, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{what} must be a whole number from {low} to {high} (got {value!r}).")


def _check_fraction(value, what: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ValueError(f"{what} must be a number from 0 to below 1 (got {value!r}).")


def validate_values(spec: ModelSpec) -> None:
    """Check every field's type and range; shape problems are found by the analysis."""
    _check_int(len(spec.blocks), 0, 12, "The number of blocks")
    for number, block in enumerate(spec.blocks, start=1):
        where = f"Block {number}"
        _check_choice(block.kind, BLOCK_KINDS, f"{where}: kind")
        _check_int(block.conv_layers, 1, 6, f"{where}: conv layers")
        _check_int(block.filters, 1, 1024, f"{where}: filters")
        _check_int(block.kernel_size, 1, 11, f"{where}: kernel size")
        _check_int(block.stride, 1, 4, f"{where}: stride")
        _check_choice(block.padding, PADDINGS, f"{where}: padding")
        _check_choice(block.activation, ACTIVATIONS, f"{where}: activation")
        _check_choice(block.pooling, POOLINGS, f"{where}: pooling")
        _check_int(block.pool_size, 2, 4, f"{where}: pool size")
        _check_fraction(block.dropout, f"{where}: dropout")
        if not isinstance(block.batch_norm, bool):
            raise ValueError(f"{where}: batch_norm must be true or false.")
    head = spec.head
    _check_choice(head.pooling, HEAD_POOLINGS, "Head: pooling")
    _check_choice(head.activation, ACTIVATIONS, "Head: activation")
    _check_fraction(head.dropout, "Head: dropout")
    if not isinstance(head.dense_units, list) or len(head.dense_units) > 4:
        raise ValueError("Head: dense_units must be a list of at most 4 layer sizes.")
    for units in head.dense_units:
        _check_int(units, 1, 4096, "Head: dense units")
    if spec.backbone is not None:
        _validate_backbone(spec)


def _validate_backbone(spec: ModelSpec) -> None:
    backbone = spec.backbone
    _check_choice(backbone.name, BACKBONE_NAMES, "Backbone: name")
    _check_int(backbone.input_size, 32, 512, "Backbone: input size")
    _check_choice(backbone.weights, BACKBONE_WEIGHTS, "Backbone: weights")
    _check_int(backbone.fine_tune_layers, 0, 500, "Backbone: fine-tune layers")
    _check_int(backbone.fine_tune_epochs, 0, 500, "Backbone: fine-tune epochs")
    factor = backbone.fine_tune_lr_factor
    if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not 0.0 < factor <= 1.0:
        raise ValueError(f"Backbone: fine-tune learning-rate factor must be above 0 and at most 1 (got {factor!r}).")
    if spec.blocks:
        raise ValueError("A design with a pretrained backbone has no conv blocks of its own; remove the blocks or the backbone.")


ARTICLE_TEST_ACCURACY = 0.8763  # what the article reports for its baseline: 10 epochs on Fashion-MNIST, its test set


def article_baseline() -> ModelSpec:
    """The article's network: Flatten → Dense(256, relu) → Dense(classes, softmax)."""
    return ModelSpec(name="Article baseline", blocks=[], head=Head(pooling="flatten", dense_units=[256]))


def simple_cnn() -> ModelSpec:
    return ModelSpec(
        name="Simple CNN",
        # A third block (no pooling) widens what each feature sees and shrinks the flattened vector: 0.90 → 0.99 on Shapes.
        blocks=[ConvBlock(filters=32), ConvBlock(filters=64), ConvBlock(filters=128, pooling="none")],
        head=Head(pooling="flatten", dense_units=[128], dropout=0.3),
    )


def lenet5() -> ModelSpec:
    """LeCun et al. 1998's layers, with 'same' padding first so 28×28 input works as 32×32 did.

    Modernised: ReLU and max pooling instead of the original tanh and average pooling (set them back on
    the Model page to compare). The original reached 0.96 on Shapes even with its own SGD recipe; this one 0.99.
    """
    return ModelSpec(
        name="LeNet-5",
        blocks=[
            ConvBlock(filters=6, kernel_size=5, activation="relu", pooling="max"),
            ConvBlock(filters=16, kernel_size=5, padding="valid", activation="relu", pooling="max"),
        ],
        head=Head(pooling="flatten", dense_units=[120, 84], activation="relu"),
    )


def vgg_mini() -> ModelSpec:
    return ModelSpec(
        name="VGG-style mini",
        blocks=[
            ConvBlock(conv_layers=2, filters=32, batch_norm=True, dropout=0.1),
            ConvBlock(conv_layers=2, filters=64, batch_norm=True, dropout=0.2),
        ],
        head=Head(pooling="flatten", dense_units=[128], dropout=0.3),
    )


def resnet_mini() -> ModelSpec:
    return ModelSpec(
        name="ResNet-style mini",
        blocks=[
            ConvBlock(kind="plain", filters=32, batch_norm=True, pooling="max"),  # the stem pools: 4× fewer multiply-adds after it
            ConvBlock(kind="residual", conv_layers=2, filters=32, batch_norm=True, pooling="max"),
            ConvBlock(kind="residual", conv_layers=2, filters=64, batch_norm=True, pooling="none"),
        ],
        head=Head(pooling="global_average", dense_units=[]),
    )


def mobilenet_mini() -> ModelSpec:
    return ModelSpec(
        name="MobileNet-style mini",
        blocks=[
            ConvBlock(kind="plain", filters=32, batch_norm=True, pooling="none"),
            ConvBlock(kind="separable", filters=64, batch_norm=True, pooling="max"),
            ConvBlock(kind="separable", filters=128, batch_norm=True, pooling="none"),
        ],
        head=Head(pooling="global_average", dense_units=[], dropout=0.2),
    )


PRESETS = {spec.name: spec for spec in (article_baseline(), lenet5(), simple_cnn(), vgg_mini(), resnet_mini(), mobilenet_mini())}


def preset(name: str) -> ModelSpec:
    """A fresh copy of a preset, safe to edit."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose from {', '.join(PRESETS)}.")
    return ModelSpec.from_dict(PRESETS[name].to_dict())


def with_block(spec: ModelSpec, index: int, **changes) -> ModelSpec:
    """A copy of ``spec`` with block ``index`` changed."""
    blocks = [replace(b) for b in spec.blocks]
    blocks[index] = replace(blocks[index], **changes)
    return replace(spec, blocks=blocks)
