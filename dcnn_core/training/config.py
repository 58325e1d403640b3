"""Training settings as typed data, and the learning-rate schedules (no TensorFlow here)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from dcnn_core.design import typed_dict

OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw")  # see _OPTIMIZER_CLASSES
SCHEDULES = ("constant", "step", "cosine", "plateau")
PRECISIONS = ("auto", "float32", "bfloat16")  # auto: bfloat16 where the CPU has it and the design measured faster with it


@dataclass
class Augmentation:
    """Random changes applied to training images only, a fresh draw every epoch."""

    flip: bool = False  # mirror left-right (fine for clothes and shapes, wrong for digits)
    rotation: float = 0.0  # up to this fraction of a full turn, either way
    zoom: float = 0.0  # zoom in or out by up to this fraction
    shift: float = 0.0  # move by up to this fraction of the width/height
    contrast: float = 0.0  # change contrast by up to this fraction

    @property
    def active(self) -> bool:
        return self.flip or any(v > 0 for v in (self.rotation, self.zoom, self.shift, self.contrast))


@dataclass
class TrainConfig:
    """How to train: filled by the Train page's widgets, saved with every run."""

    optimizer: str = "adam"  # adam, sgd (with momentum 0.9), rmsprop or adamw
    learning_rate: float = 1e-3
    batch_size: int = 32
    epochs: int = 10
    validation_split: float = 0.1  # share of the training images held out to validate each epoch
    seed: int = 0  # same seed, same design, same data: the same run
    schedule: str = "constant"  # constant, step, cosine or plateau (reduce on plateau)
    step_every: int = 5  # step schedule: epochs between drops
    step_factor: float = 0.5  # step and plateau schedules: multiply the rate by this
    early_stopping: bool = False  # stop when validation loss stops improving; keep the best weights
    patience: int = 3  # epochs without improvement before early stopping (or a plateau drop)
    class_weights: bool = False  # weigh classes by 1/frequency, for imbalanced data
    augmentation: Augmentation = field(default_factory=Augmentation)
    # Seconds of training to plan for ("best in N minutes"): epochs are counted from the measured pace (``epochs`` is then
    # the most) and a cosine schedule reaches zero when the time is up (``dcnn_core.training.budget``). None: fixed epochs.
    budget_s: float | None = None
    precision: str = "auto"  # see PRECISIONS; the output layer always computes in float32

    def validate(self) -> None:
        """Raise ValueError with a message a user can act on."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Optimizer must be one of {', '.join(OPTIMIZERS)}.")
        if not (0 < self.learning_rate <= 100):
            raise ValueError("The learning rate must be above 0 and at most 100.")
        if not (1 <= self.batch_size <= 4096):
            raise ValueError("The batch size must be from 1 to 4096.")
        if not (1 <= self.epochs <= 500):
            raise ValueError("Epochs must be from 1 to 500.")
        if not (0 <= self.validation_split < 0.9):
            raise ValueError("The validation split must be from 0 to below 0.9.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"The schedule must be one of {', '.join(SCHEDULES)}.")
        if not (1 <= self.step_every <= 500) or not (0 < self.step_factor < 1):
            raise ValueError("A step schedule needs a step of at least 1 epoch and a factor between 0 and 1.")
        if not (1 <= self.patience <= 100):
            raise ValueError("Patience must be from 1 to 100 epochs.")
        if (self.early_stopping or self.schedule == "plateau") and self.validation_split == 0:
            raise ValueError("Early stopping and reduce-on-plateau watch the validation loss: set a validation split above 0.")
        if self.budget_s is not None and not (10 <= self.budget_s <= 3600):
            raise ValueError("A time budget must be from 10 seconds to 60 minutes.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"The precision must be one of {', '.join(PRECISIONS)}.")
        augmentation = self.augmentation
        for name in ("rotation", "zoom", "shift", "contrast"):
            if not (0 <= getattr(augmentation, name) <= 0.5):
                raise ValueError(f"Augmentation {name} must be from 0 to 0.5.")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Build from a dict, refusing unknown fields and values of the wrong kind by name."""
        config = typed_dict.from_dict(cls, data, title="training config")
        config.validate()
        return config


_OPTIMIZER_CLASSES = {  # config.optimizer → (keras.optimizers class, its arguments besides the learning rate)
    "adam": ("Adam", {}),
    "sgd": ("SGD", {"momentum": 0.9}),
    "rmsprop": ("RMSprop", {}),
    "adamw": ("AdamW", {}),
}


def optimizer_arguments(config: TrainConfig) -> tuple[str, dict]:
    """The ``keras.optimizers`` class name and arguments for ``config`` (the code generator writes these)."""
    name, extra = _OPTIMIZER_CLASSES[config.optimizer]
    return name, {"learning_rate": float(config.learning_rate), **extra}


def build_optimizer(keras, config: TrainConfig):
    """The Keras optimizer ``config`` asks for; ``keras`` is the imported module (this file stays TensorFlow-free)."""
    name, arguments = optimizer_arguments(config)
    return getattr(keras.optimizers, name)(**arguments)


def scheduled_rate(config: TrainConfig, epoch: int) -> float:
    """The learning rate used in ``epoch`` (0-based) by the constant, step and cosine schedules.

    Reduce-on-plateau depends on the validation loss, so its rate is known only while training.
    """
    if config.schedule == "step":
        return config.learning_rate * config.step_factor ** (epoch // config.step_every)
    if config.schedule == "cosine":
        return config.learning_rate * 0.5 * (1 + math.cos(math.pi * min(epoch, config.epochs) / max(1, config.epochs)))
    return config.learning_rate


def schedule_preview(config: TrainConfig) -> list[float]:
    """The rate for every epoch, for the preview plot (plateau drawn as constant)."""
    return [scheduled_rate(config, epoch) for epoch in range(config.epochs)]
