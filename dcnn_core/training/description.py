"""What a run is, as data: the design, the training config, a data-set reference, the owner and the limits.

A ``RunDescription`` is made once, before the run starts, and never changed. It holds no arrays and no
Keras objects — only data that any engine (a thread here, a worker process elsewhere) can receive.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from dcnn_core.design.spec import ModelSpec
from dcnn_core.naming import counted
from dcnn_core.training.config import TrainConfig


@dataclass(frozen=True)
class RunLimits:
    """Bounds on one run's work, set by the server when a room shares it (None: no limit)."""

    images_per_epoch: int | None = None  # a fresh random subset of this many training images each epoch
    max_compute_s: float | None = None  # stop (model kept) after this much training time
    max_epochs: int | None = None  # epochs per session of training (the run's own count is cut to it)

    def describe(self) -> str:
        parts = []
        if self.images_per_epoch:
            parts.append(f"at most {self.images_per_epoch:,} training images per epoch")
        if self.max_compute_s:
            parts.append(f"at most {self.max_compute_s / 60:g} min of training per run")
        if self.max_epochs:
            parts.append(f"at most {counted(self.max_epochs, 'epoch')}")
        return "; ".join(parts)

    @property
    def bounded(self) -> bool:
        """Whether any bound is set (a shared server's run)."""
        return self != RunLimits()


@dataclass(frozen=True)
class RunDescription:
    """What a run is: made once, before it starts, never changed."""

    spec: ModelSpec
    config: TrainConfig
    dataset_ref: dict  # {"key", "options", "title"} (+ "shelf" for a user's own images): enough to find the data again
    owner: str = ""
    run_id: str = field(default_factory=lambda: secrets.token_hex(6))  # unguessable: the id in a URL reattaches to it
    strategy: str = "default"  # how it was trained, in words (e.g. "MirroredStrategy on 2 GPUs")
    created_at: float = field(default_factory=time.time)
    max_parameters: int | None = None
    limits: RunLimits = RunLimits()

    @property
    def dataset_title(self) -> str:
        return str(self.dataset_ref.get("title") or self.dataset_ref.get("key", ""))


class Described:
    """A run's description fields, read-only, for anything that holds a ``description`` (a job here, a mirror of one elsewhere)."""

    description: RunDescription

    job_id = property(lambda self: self.description.run_id)
    owner = property(lambda self: self.description.owner)
    spec = property(lambda self: self.description.spec)
    config = property(lambda self: self.description.config)
    dataset_ref = property(lambda self: self.description.dataset_ref)
    strategy = property(lambda self: self.description.strategy)
    created_at = property(lambda self: self.description.created_at)

    @property
    def display_name(self) -> str:
        return self.spec.name


def fine_tune_epochs(spec: ModelSpec) -> int:
    """Epochs of phase 2 (fine-tuning a pretrained backbone), 0 for a design trained from scratch."""
    backbone = getattr(spec, "backbone", None)
    return backbone.fine_tune_epochs if backbone is not None and backbone.fine_tune_layers > 0 else 0
