"""The data-set registry: every image set the app can load, as uint8 arrays.

Images stay uint8 (N, H, W, C) in memory; models normalise them with a
Rescaling layer, so a saved model takes raw pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from dcnn_core.data import shapes

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


class DatasetUnavailable(RuntimeError):
    """A data set could not be loaded (e.g. its download failed offline)."""


@dataclass(frozen=True)
class Dataset:
    """An image classification data set held in memory."""

    key: str
    title: str
    source: str
    x_train: np.ndarray  # uint8, (N, H, W, C)
    y_train: np.ndarray  # int64, (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    light_on_dark: bool  # True when ink is bright on a dark background (MNIST-like)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[-1])

    def card(self) -> dict[str, str]:
        """A short description for a data-set card."""
        height, width, channels = self.input_shape
        return {
            "Source": self.source,
            "Image shape": f"{height} × {width} × {channels} ({'colour' if channels == 3 else 'grayscale'})",
            "Classes": f"{self.num_classes}: {', '.join(self.class_names)}",
            "Training images": f"{len(self.x_train):,}",
            "Test images": f"{len(self.x_test):,}",
        }


CUSTOM_KEY = "custom"  # a user's own images, named by ``options["name"]``; they live in the user's session (and saved runs)


@dataclass(frozen=True)
class DatasetChoice:
    """Which data set: a ``REGISTRY`` key (or ``CUSTOM_KEY``) and its loader's options; the title once it is loaded."""

    key: str = "shapes"
    options: dict = field(default_factory=dict)
    title: str = ""

    @property
    def is_custom(self) -> bool:
        return self.key == CUSTOM_KEY

    def titled(self, title: str) -> DatasetChoice:
        return DatasetChoice(self.key, dict(self.options), title)

    def to_dict(self) -> dict:
        """As saved with a run or a leaderboard entry: ``{"key", "options", "title"}``."""
        return {"key": self.key, "options": dict(self.options), **({"title": self.title} if self.title else {})}

    @classmethod
    def from_dict(cls, data: dict) -> DatasetChoice:
        """From a saved reference (lenient: unknown fields are ignored; the loader checks the options)."""
        options = data.get("options") or {}
        return cls(str(data.get("key", "")), dict(options) if isinstance(options, dict) else {}, str(data.get("title", "") or ""))


@dataclass(frozen=True)
class DatasetOption:
    """One entry in the registry: what a user picks, and how it loads."""

    key: str
    title: str
    description: str
    needs_download: bool
    loader: Callable[..., Dataset] = field(repr=False)


def _freeze(*arrays: np.ndarray) -> None:
    for array in arrays:
        array.setflags(write=False)  # shared between every user: nobody may edit it


def _make(key, title, source, x_train, y_train, x_test, y_test, class_names, light_on_dark) -> Dataset:
    return make_dataset(key, title, source, x_train, y_train, x_test, y_test, class_names, light_on_dark)


def make_dataset(key, title, source, x_train, y_train, x_test, y_test, class_names, light_on_dark) -> Dataset:
    """A read-only Dataset from arrays: uint8 images (a channel axis is added to (N, H, W)), int64 labels."""
    x_train = np.ascontiguousarray(x_train, dtype=np.uint8)
    x_test = np.ascontiguousarray(x_test, dtype=np.uint8)
    if x_train.ndim == 3:
        x_train, x_test = x_train[..., None], x_test[..., None]
    y_train = np.asarray(y_train, dtype=np.int64).reshape(-1)
    y_test = np.asarray(y_test, dtype=np.int64).reshape(-1)
    _freeze(x_train, y_train, x_test, y_test)
    return Dataset(key, title, source, x_train, y_train, x_test, y_test, tuple(class_names), light_on_dark)


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return stratified_split(labels, test_fraction, seed)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded split that keeps each class's share in both parts."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = max(1, int(round(len(members) * test_fraction)))
        test.extend(members[:cut])
        train.extend(members[cut:])
    return rng.permutation(np.array(train)), rng.permutation(np.array(test))


def load_digits() -> Dataset:
    """scikit-learn's bundled UCI handwritten digits: 1,797 real 8×8 images."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 → 0..255
    train, test = _stratified_split(bunch.target, test_fraction=0.2, seed=0)
    return _make(
        "digits", "Handwritten digits (8×8, bundled)", "scikit-learn load_digits (UCI ML hand-written digits)",
        images[train], bunch.target[train], images[test], bunch.target[test],
        [str(d) for d in range(10)], light_on_dark=True,
    )  # fmt: skip


def load_shapes(count_per_class: int = 600, image_size: int = 28, colour: bool = False, seed: int = 0, clutter: bool = False) -> Dataset:
    """The generated Shapes set, split 5:1 into training and test images (``clutter``: the harder variant)."""
    images, labels = shapes.generate_shapes(count_per_class, image_size, colour, seed, clutter=clutter)
    train, test = _stratified_split(labels, test_fraction=1 / 6, seed=seed)
    variant = ["colour" if colour else "grayscale", *(["cluttered"] if clutter else [])]
    return _make(
        "-".join(["shapes", *variant]), f"Shapes ({', '.join(variant)}, generated)",
        f"Generated offline by dcnn_core.data.shapes (seed {seed}, {count_per_class} per class)",
        images[train], labels[train], images[test], labels[test], shapes.SHAPE_NAMES,
        light_on_dark=not colour,
    )  # fmt: skip


def _keras_loader(name: str, title: str):
    """keras.datasets' arrays of ``name``, its files fetched with a timeout and checked (``downloaded``); offline: refused at once."""
    from dcnn_core import downloads
    from dcnn_core.data import downloaded

    try:
        if downloads.offline():  # offline on purpose (e.g. CI): never try a download
            raise downloads.DownloadFailed("DCNN_OFFLINE=1")
        return downloaded.load_arrays(name)
    except downloads.DownloadFailed as error:  # the details (URL, cause) are in the server log
        raise DatasetUnavailable(
            f"{title} could not be downloaded — this server seems to be offline, so use a bundled set (Shapes or Handwritten digits)."
        ) from error


def load_fashion_mnist() -> Dataset:
    (x_train, y_train), (x_test, y_test) = _keras_loader("fashion_mnist", "Fashion-MNIST")
    return _make(
        "fashion_mnist", "Fashion-MNIST", "Zalando Research, via keras.datasets (downloaded once, then cached)",
        x_train, y_train, x_test, y_test, FASHION_MNIST_CLASSES, light_on_dark=True,
    )  # fmt: skip


def load_mnist() -> Dataset:
    (x_train, y_train), (x_test, y_test) = _keras_loader("mnist", "MNIST")
    return _make(
        "mnist", "MNIST digits", "Yann LeCun et al., via keras.datasets (downloaded once, then cached)",
        x_train, y_train, x_test, y_test, [str(d) for d in range(10)], light_on_dark=True,
    )  # fmt: skip


def load_cifar10() -> Dataset:
    (x_train, y_train), (x_test, y_test) = _keras_loader("cifar10", "CIFAR-10")
    return _make(
        "cifar10", "CIFAR-10", "Krizhevsky, via keras.datasets (downloaded once, then cached)",
        x_train, y_train, x_test, y_test, CIFAR10_CLASSES, light_on_dark=False,
    )  # fmt: skip


_OPTIONS = (
    DatasetOption("fashion_mnist", "Fashion-MNIST", "70,000 clothing photos, 28×28 grayscale — the article's data.",
                  True, load_fashion_mnist),
    DatasetOption("shapes", "Shapes (generated)", "Circles, squares, stars… anywhere in the frame. Works offline.",
                  False, load_shapes),
    DatasetOption("digits", "Handwritten digits (bundled)", "1,797 real 8×8 digits shipped with scikit-learn. Works offline.",
                  False, load_digits),
    DatasetOption("mnist", "MNIST", "70,000 handwritten digits, 28×28 grayscale.", True, load_mnist),
    DatasetOption("cifar10", "CIFAR-10", "60,000 small colour photos, 32×32, ten classes.", True, load_cifar10),
)  # fmt: skip
REGISTRY: dict[str, DatasetOption] = {option.key: option for option in _OPTIONS}


def load_dataset(key: str, **options) -> Dataset:
    """Load a registered data set by key; raises DatasetUnavailable when it cannot be fetched."""
    if key not in REGISTRY:
        raise ValueError(f"Unknown data set {key!r}; choose from {', '.join(REGISTRY)}.")
    return REGISTRY[key].loader(**options)


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.bincount(labels, minlength=num_classes)


def mean_images(dataset: Dataset, limit_per_class: int = 2000) -> np.ndarray:
    """The mean image of each class, (K, H, W, C) float32 in 0..255."""
    means = np.zeros((dataset.num_classes, *dataset.input_shape), np.float32)
    for label in range(dataset.num_classes):
        members = np.flatnonzero(dataset.y_train == label)[:limit_per_class]
        if len(members):
            means[label] = dataset.x_train[members].mean(axis=0)
    return means


def sample_indices(labels: np.ndarray, count: int, class_filter: int | None = None, seed: int = 0) -> np.ndarray:
    """Indices of ``count`` images, optionally of one class, chosen reproducibly."""
    pool = np.arange(len(labels)) if class_filter is None else np.flatnonzero(labels == class_filter)
    rng = np.random.default_rng(seed)
    return rng.choice(pool, size=min(count, len(pool)), replace=False) if len(pool) else pool
