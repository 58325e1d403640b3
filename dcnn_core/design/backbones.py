"""Pretrained backbones from keras.applications: the catalogue, their weights, and the two training phases.

A design with a ``spec.Backbone`` is built as: resize → grey repeated to RGB → the backbone (its own
preprocessing inside, so the model takes raw 0–255 pixels) → the usual head. The backbone's layers
sit flat in the model, so Grad-CAM and feature maps see its convolutions.

Weights come, in this order, from ``DCNN_WEIGHTS_DIR`` (keras's own file names), from Keras's cache
(``~/.keras/models``, or ``$KERAS_HOME/models``), or — unless ``DCNN_OFFLINE=1``, and when the download
host answers within two seconds — from a download into that cache (``dcnn_core.downloads``: a timeout, a
temporary file renamed into place). Every file is checked against the md5 keras.applications publishes
(``CATALOGUE``) before it is used; a wrong cached file is deleted, a wrong file in the folder refused.
A run fetches its weights (``fetch_weights``) before its first turn at the processor, never during one.
What users read is one sentence without paths (``WeightsStatus.message``); the details go to the server
log, and ``organiser_help`` tells the organiser what to put where. "random" weights are always available
(and are not transfer learning).

Training (two phases, driven by the training job):
1. ``build.build_model`` returns the model with the whole backbone frozen: train the head.
2. If ``fine_tunes(spec)``: ``unfreeze_top(model, spec.backbone.fine_tune_layers)``, compile again
   with ``fine_tune_config(config, spec.backbone)``'s learning rate, and fit on.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass, replace

from dcnn_core import downloads
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
logger = logging.getLogger(__name__)

# What users read: one sentence each, no path, file name or variable (those go to the log and ``organiser_help``).
NOT_AVAILABLE = "ImageNet weights are not available on this server, so only random initialisation (not transfer learning) can be used."
DAMAGED = "The ImageNet weights on this server are damaged; the organiser has been told (server log)."
DOWNLOAD_FAILED = "The ImageNet weights could not be downloaded just now; try again in a minute, or use random initialisation."


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
    weights_md5: str  # the file's md5, as keras.applications publishes it next to its WEIGHTS_PATH (WEIGHTS_HASHES)


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
    """No usable ImageNet weights for a backbone; the message is one sentence for users, without a path."""


@dataclass(frozen=True)
class WeightsStatus:
    available: bool
    source: str  # "folder", "cache", "download", "missing" or "damaged"
    path: str | None  # the file to load, when it is already on disk (for the core; never shown to users)
    message: str  # one sentence for users: no path, file name or environment variable


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


def offline(environ=None) -> bool:
    """``DCNN_OFFLINE=1``: the server has no internet on purpose, so nothing is ever downloaded."""
    from dcnn_core import downloads

    return downloads.offline(environ)


def keras_cache_dir() -> str:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models``, by default ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def _remote(entry: BackboneInfo) -> downloads.Remote:
    return downloads.Remote(entry.weights_url + entry.weights_file, entry.weights_md5)


def weights_status(name: str, weights_dir: str | None = None, allow_download: bool = True) -> WeightsStatus:
    """Where ``name``'s ImageNet weights would come from; never downloads, never waits more than ~2 s.

    ``weights_dir`` defaults to ``$DCNN_WEIGHTS_DIR``. Files are checked against their md5 (once per file state);
    a wrong one in Keras's cache is deleted, a wrong one in the folder makes the weights "damaged".
    """
    entry = info(name)
    weights_dir = weights_dir or weights_dir_from_env()
    if weights_dir:
        path = os.path.join(weights_dir, entry.weights_file)
        if os.path.isfile(path):
            if downloads.matches(path, entry.weights_md5):
                return WeightsStatus(True, "folder", path, "ImageNet weights are on this server.")
            return WeightsStatus(False, "damaged", None, DAMAGED)  # the organiser's file: refused, never deleted
    cached = os.path.join(keras_cache_dir(), entry.weights_file)
    if downloads.discard_if_wrong(cached, entry.weights_md5):
        return WeightsStatus(True, "cache", cached, "ImageNet weights are on this server.")
    if allow_download and not offline() and _host_answers(entry.weights_url):
        return WeightsStatus(True, "download", None, "ImageNet weights will be downloaded once, when the training starts.")
    return WeightsStatus(False, "missing", None, NOT_AVAILABLE)


def organiser_help(name: str) -> str:
    """What the organiser can do so that ``name``'s ImageNet weights are available (Markdown; no server path)."""
    entry = info(name)
    return (
        f"{entry.title} needs Keras's own file `{entry.weights_file}` (from {entry.weights_url}{entry.weights_file}, "
        f"md5 `{entry.weights_md5}`). On a server without internet, put it in a folder and name that folder in the "
        f"environment variable `{WEIGHTS_DIR_VARIABLE}`; with internet (and without `DCNN_OFFLINE=1`), the server "
        "downloads it once into Keras's cache. Every file is checked against that md5 before it is used; the server "
        "log says which file was refused and why."
    )


def fetch_weights(name: str, weights_dir: str | None = None, on_download=None) -> str:
    """The local, checked file of ``name``'s ImageNet weights, downloading it into Keras's cache if needed and possible.

    Call it before a run's first turn at the processor: a download takes up to ``downloads.DEADLINE_S``. ``on_download``
    (no arguments) is called just before a download starts. Raises ``WeightsUnavailable`` with a sentence for users.
    """
    status = weights_status(name, weights_dir)
    if not status.available:
        raise WeightsUnavailable(status.message)
    if status.path:
        return status.path
    if on_download is not None:
        on_download()
    entry = info(name)
    try:
        return downloads.fetch(_remote(entry), os.path.join(keras_cache_dir(), entry.weights_file))
    except downloads.DownloadFailed as error:  # the details (URL, cause) are in the log already
        raise WeightsUnavailable(DOWNLOAD_FAILED) from error


def fetch_for(spec: ModelSpec, on_download=None) -> None:
    """The ImageNet weights ``spec`` needs, on disk and checked (nothing for other designs); ``WeightsUnavailable`` if not."""
    backbone = spec.backbone
    if backbone is not None and backbone.weights == "imagenet":
        try:
            fetch_weights(backbone.name, on_download=on_download)
        except WeightsUnavailable as error:
            logger.warning("A run needs %s's ImageNet weights: %s", backbone.name, error)
            raise


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
    path = fetch_weights(backbone.name, weights_dir) if backbone.weights == "imagenet" else None  # a run fetched it already
    keras = import_keras()
    application = getattr(keras.applications, entry.application)
    try:
        network = application(include_top=False, weights=path, input_tensor=tensor)
    except (ValueError, OSError, KeyError) as error:
        logger.error("%s does not hold %s's weights without the top: %s", path, entry.title, error)
        raise WeightsUnavailable(DAMAGED) from error
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
