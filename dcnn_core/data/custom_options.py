"""What an import of a user's own images is asked for, and what it gives back.

``ImportOptions`` holds the image size, the split and every limit that protects the server;
``ImportReport`` is what the page shows before any training; ``ImportRefused`` turns the
whole import down with a message for the user. The small types after them (one candidate
file, where the files came from, a file that is skipped) are shared by the steps of an
import: ``custom_sources`` (containers and class folders) and ``custom_decode`` (images).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dcnn_core.data import datasets
from dcnn_core.settings import load_settings

__all__ = ["MB", "ImportOptions", "ImportRefused", "ImportReport", "Origin", "Skip", "Source"]

MB = 1024 * 1024


def _budget_default() -> int:
    return load_settings().custom_data_budget_mb * MB


@dataclass
class ImportOptions:
    """How to turn a user's files into a data set, and the limits that protect the server."""

    image_size: int = 32  # every image is padded to a square, then resized to image_size × image_size
    grayscale: bool = False  # one channel instead of three
    test_fraction: float = 0.2  # per class, held out for the test split (validation is split off later by training)
    seed: int = 0  # the train/test split, and which images are left out when over the memory budget
    min_images_per_class: int = 4  # after skipping: at least 3 to train on and 1 to test with
    max_classes: int = 100
    max_archive_bytes: int = 50 * MB  # the zip file itself
    max_members: int = 5000  # files (entries) in a zip, folder or upload
    max_total_uncompressed: int = 300 * MB  # bytes of all files together, after decompression
    max_ratio: int = 100  # uncompressed ÷ compressed, per large member and for the whole zip
    max_megapixels: float = 16  # per decoded image, before resizing (a single prediction allows more)
    max_total_megapixels: float = 1000  # all decoded images of one import together: caps the decoding time
    memory_budget_bytes: int = field(default_factory=_budget_default)  # the resulting uint8 arrays (DCNN_CUSTOM_DATA_BUDGET_MB)

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    @property
    def bytes_per_image(self) -> int:
        return self.image_size * self.image_size * self.channels

    def validate(self) -> None:
        if not 8 <= self.image_size <= 128:
            raise ValueError("The image size must be from 8 to 128 pixels.")
        if not 0.05 <= self.test_fraction <= 0.5:
            raise ValueError("The test fraction must be from 0.05 to 0.5.")
        if self.min_images_per_class < 2:
            raise ValueError("Each class needs at least 2 images: one to train on and one to test with.")
        if self.max_megapixels <= 0 or self.max_total_megapixels <= 0:
            raise ValueError("The pixel limits must be above zero.")
        if self.memory_budget_bytes < self.bytes_per_image:
            raise ValueError("The memory budget is smaller than one image.")


@dataclass
class ImportReport:
    """What an import made, and what it left out and why — shown before any training."""

    dataset: datasets.Dataset
    counts: dict[str, int]  # usable images per class, training and test together
    skipped: list[tuple[str, str]]  # (file, reason), e.g. ("cats/notes.txt", "not an image")
    notes: list[str]  # things done to the data the user should know, e.g. images left out for memory


@dataclass(frozen=True)
class Source:
    """One candidate image: the name shown to the user and how to read its bytes (with a cap)."""

    label: str
    read: Callable[[], bytes]


class ImportRefused(ValueError):
    """The whole import is refused; the message tells the user what to change, naming the file or class."""

    def __init__(self, message: str, skipped: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.skipped = skipped or []  # files left out before the refusal, so the user can see why a class ran short


@dataclass(frozen=True)
class Origin:
    """Where an import's files came from, said as each use needs it."""

    name: str  # the set's plain name, shown as its title
    where: str  # for messages: "your zip 'pets.zip'"
    kind: str  # for the data-set card, free of user text: "a zip of class folders"


class Skip(Exception):
    """A file that is left out; the message is the reason shown in the table."""
