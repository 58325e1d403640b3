"""Pretrained backbones from keras.applications: the catalogue, their weights, and the two training phases.

A design with a ``spec.Backbone`` is built as: resize → grey repeated to RGB → the backbone (its own
preprocessing inside, so the model takes raw 0–255 pixels) → the usual head. The backbone's layers
sit flat in the model, so Grad-CAM and feature maps see its convolutions.

Weights come, in this order, from ``DCNN_WEIGHTS_DIR`` (keras's own file names), from Keras's cache
(``~/.keras/models``, or ``$KERAS_HOME/models``), or — when the download host answers within two
seconds — from a download by Keras into that cache. Otherwise ``WeightsUnavailable`` says so in one
sentence; "random" weights are always available (and are not transfer learning).

Training (two phases, driven by the training job):
1. ``build.build_model`` returns the model with the whole backbone frozen: train the head.
2. If ``fine_tunes(spec)``: ``unfreeze_top(model, spec.backbone.fine_tune_layers)``, compile again
   with ``fine_tune_config(config, spec.backbone)``'s learning rate, and fit on.
"""

from __future__ import annotations

import functools
import math
import os
import socket
import threading
import time
from dataclasses import dataclass, replace

from dcnn_core.design.spec import Backbone, Head, ModelSpec
from dcnn_core.runtime import import_keras
from dcnn_core.training.config import TrainConfig

WEIGHTS_DIR_VARIABLE = "DCNN_WEIGHTS_DIR"
INPUT_SIZE_CHOICES = (96, 128)  # cheap on a CPU; each backbone's default size is offered too
BEFORE_BACKBONE = ("resize", "grayscale_to_rgb")  # the model's own layers in front of the backbone
HEAD_START = ("flatten", "global_pool")  # the first layer after the backbone
NEVER_UNFROZEN = ("BatchNormalization", "Normalization")  # stay in inference mode while fine-tuning
_PROBE_TIMEOUT_S = 2.0
_PROBE_TTL_S = 300.0


@dataclass(frozen=True)
class BackboneInfo:
    """One entry of the catalogue: what it is and where its ImageNet weights come from."""

    name: str
    title: str
    description: str
    parameters: int  # without the ImageNet classifier (include_top=False)
    default_input_size: int
    min_input_size: int
    application: str  # the keras.applications function
    weights_file: str  # keras's own file name (include_top=False)
    weights_url: str
    weights_md5: str


CATALOGUE = {
    info.name: info
    for info in (
        BackboneInfo(
            "mobilenet_v3_small", "MobileNetV3-Small",
            "Google's 2019 network for phones: depthwise-separable blocks with squeeze-and-excitation, the lightest here.",
            939_120, 224, 32, "MobileNetV3Small", "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
            "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/",
            "d3e8ec802a04aa4fc771ee12a9a9b836",
        ),
        BackboneInfo(
            "efficientnet_b0", "EfficientNet-B0",
            "Google's 2019 network scaled for accuracy per operation: more accurate than MobileNetV3 and about four times heavier.",
            4_049_571, 224, 32, "EfficientNetB0", "efficientnetb0_notop.h5",
            "https://storage.googleapis.com/keras-applications/", "50bc09e76180e00e4465e1a485ddc09d",
        ),
    )
}  # fmt: skip


class WeightsUnavailable(ValueError):
    """No ImageNet weights for a backbone; the message is one sentence a user can act on."""


@dataclass(frozen=True)
class WeightsStatus:
    available: bool
    source: str  # "folder", "cache", "download" or "missing"
    path: str | None  # the file to load, when it is already on disk
    message: str


@dataclass(frozen=True)
class BackboneCost:
    """Shapes and costs of one backbone at one input size (from a built Keras model, cached)."""

    output_shape: tuple[int, int, int]
    parameters: int
    mult_adds: int
    activation_bytes: int
    layer_parameters: tuple[int, ...]  # trainable parameters of each layer that fine-tuning may unfreeze, bottom to top

    def fine_tune_parameters(self, layers: int) -> int:
        return sum(self.layer_parameters[len(self.layer_parameters) - layers :]) if layers > 0 else 0


def info(name: str) -> BackboneInfo:
    if name not in CATALOGUE:
        raise ValueError(f"Unknown backbone {name!r}; choose from {', '.join(CATALOGUE)}.")
    return CATALOGUE[name]


def default_spec(name: str = "mobilenet_v3_small", weights: str = "imagenet") -> ModelSpec:
    """A design from ``name``: the backbone at 96 px, global average pooling, dropout 0.2, the classes."""
    return ModelSpec(
        name=f"{info(name).title} (pretrained)" if weights == "imagenet" else f"{info(name).title} (random init)",
        blocks=[],
        head=Head(pooling="global_average", dense_units=[], dropout=0.2),
        backbone=Backbone(name=name, weights=weights),
    )


# --- weights ---------------------------------------------------------------------------------


def weights_dir_from_env(environ=None) -> str | None:
    value = (os.environ if environ is None else environ).get(WEIGHTS_DIR_VARIABLE, "").strip()
    return value or None


def keras_cache_dir() -> str:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models``, by default ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def weights_status(name: str, weights_dir: str | None = None, allow_download: bool = True) -> WeightsStatus:
    """Where ``name``'s ImageNet weights would come from; never downloads, never waits more than ~2 s.

    ``weights_dir`` defaults to ``$DCNN_WEIGHTS_DIR``.
    """
    entry = info(name)
    weights_dir = weights_dir or weights_dir_from_env()
    if weights_dir:
        path = os.path.join(weights_dir, entry.weights_file)
        if os.path.isfile(path):
            return WeightsStatus(True, "folder", path, f"ImageNet weights from {path}.")
    cached = os.path.join(keras_cache_dir(), entry.weights_file)
    if os.path.isfile(cached):
        return WeightsStatus(True, "cache", cached, f"ImageNet weights from Keras's cache ({cached}).")
    if allow_download and _host_answers(entry.weights_url):
        return WeightsStatus(True, "download", None, f"ImageNet weights will be downloaded once into {keras_cache_dir()}.")
    where = f"{weights_dir}" if weights_dir else f"a folder named by {WEIGHTS_DIR_VARIABLE}"
    return WeightsStatus(
        False, "missing", None,
        f"No ImageNet weights for {entry.title} on this server and no internet to download them: put "
        f"{entry.weights_file} in {where}, or use random initialisation (which is not transfer learning).",
    )  # fmt: skip


def weights_path(name: str, weights_dir: str | None = None) -> str:
    """The local file of ``name``'s ImageNet weights, downloading it into Keras's cache if needed and possible."""
    status = weights_status(name, weights_dir)
    if not status.available:
        raise WeightsUnavailable(status.message)
    if status.path:
        return status.path
    entry = info(name)
    keras = import_keras()
    try:
        url = entry.weights_url + entry.weights_file
        return keras.utils.get_file(entry.weights_file, url, cache_subdir="models", file_hash=entry.weights_md5)
    except Exception as error:  # noqa: BLE001 - any network or hash failure becomes the one message
        raise WeightsUnavailable(f"Downloading the ImageNet weights for {entry.title} failed ({error}).") from error


_probe_lock = threading.Lock()
_probe_results: dict[str, tuple[float, bool]] = {}


def _host_answers(url: str) -> bool:
    """Whether the download host accepts a connection within two seconds (remembered for five minutes)."""
    host = url.split("/")[2]
    with _probe_lock:
        when, answer = _probe_results.get(host, (0.0, False))
        if time.monotonic() - when < _PROBE_TTL_S:
            return answer
    try:
        with socket.create_connection((host, 443), timeout=_PROBE_TIMEOUT_S):
            answer = True
    except OSError:
        answer = False
    with _probe_lock:
        _probe_results[host] = (time.monotonic(), answer)
    return answer


# --- building --------------------------------------------------------------------------------


def attach(tensor, backbone: Backbone, weights_dir: str | None = None):
    """The backbone applied to ``tensor`` (RGB, 0–255, input_size square), frozen; returns its output tensor.

    Raises ``WeightsUnavailable`` when ImageNet weights are asked for and cannot be had.
    """
    entry = info(backbone.name)
    path = weights_path(backbone.name, weights_dir) if backbone.weights == "imagenet" else None
    keras = import_keras()
    application = getattr(keras.applications, entry.application)
    try:
        network = application(include_top=False, weights=path, input_tensor=tensor)
    except (ValueError, OSError, KeyError) as error:
        raise WeightsUnavailable(f"The file {path} does not hold {entry.title}'s weights without the top ({error}).") from error
    for layer in network.layers:
        layer.trainable = False
    return network.output


def backbone_layers(model) -> list:
    """The backbone's layers in ``model`` (built by ``build.build_model``), bottom to top."""
    names = [layer.name for layer in model.layers]
    start = max(names.index(name) for name in BEFORE_BACKBONE if name in names) + 1
    end = min(names.index(name) for name in HEAD_START if name in names)
    return model.layers[start:end]


def _tunable(layer) -> bool:
    return bool(layer.weights) and type(layer).__name__ not in NEVER_UNFROZEN


def unfreeze_top(model, layers: int) -> list[str]:
    """Make exactly the top ``layers`` backbone layers with weights trainable (batch norm never); returns their names.

    Compile the model again afterwards: Keras fixes what it trains at compile time.
    """
    candidates = [layer for layer in backbone_layers(model) if _tunable(layer)]
    chosen = candidates[len(candidates) - layers :] if layers > 0 else []
    for layer in backbone_layers(model):
        layer.trainable = False
    for layer in chosen:
        layer.trainable = True
    return [layer.name for layer in chosen]


def fine_tunes(spec: ModelSpec) -> bool:
    """Whether ``spec`` has a phase 2."""
    backbone = spec.backbone
    return backbone is not None and backbone.fine_tune_layers > 0 and backbone.fine_tune_epochs > 0


def fine_tune_config(config: TrainConfig, backbone: Backbone) -> TrainConfig:
    """Phase 2's settings: the same, at ``fine_tune_lr_factor`` × the rate, for ``fine_tune_epochs`` epochs."""
    return replace(config, learning_rate=config.learning_rate * backbone.fine_tune_lr_factor, epochs=backbone.fine_tune_epochs)


# --- costs -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def cost(name: str, input_size: int) -> BackboneCost:
    """Output shape, parameters, multiply-adds and activation memory, measured on a randomly initialised copy."""
    entry = info(name)
    if input_size < entry.min_input_size:
        raise ValueError(f"{entry.title} needs an input of at least {entry.min_input_size}×{entry.min_input_size} pixels.")
    keras = import_keras()
    network = getattr(keras.applications, entry.application)(include_top=False, weights=None, input_shape=(input_size, input_size, 3))
    mult_adds = activation_values = 0
    for layer in network.layers[1:]:
        mult_adds += _mult_adds(layer)
        activation_values += math.prod(layer.output.shape[1:])
    layer_parameters = tuple(sum(math.prod(v.shape) for v in layer.weights if v.trainable) for layer in network.layers if _tunable(layer))
    return BackboneCost(tuple(network.output.shape[1:]), network.count_params(), mult_adds, activation_values * 4, layer_parameters)


def _mult_adds(layer) -> int:
    kind = type(layer).__name__
    if kind not in ("Conv2D", "DepthwiseConv2D", "Dense"):
        return 0
    kernel = layer.weights[0].shape
    outputs = math.prod(layer.output.shape[1:-1]) if kind != "Dense" else 1
    return outputs * math.prod(kernel)  # a grouped Conv2D's kernel already holds only its group's input channels
