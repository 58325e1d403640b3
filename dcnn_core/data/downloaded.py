"""The data sets that download — Fashion-MNIST, MNIST, CIFAR-10 — fetched safely, then read as keras.datasets reads them.

keras.datasets' ``load_data`` downloads with ``keras.utils.get_file``: no timeout (a stalled host blocks the page that
asked, and every page waiting for the same set) and straight to the final path (a download cut short leaves a
half-written file that breaks every later load; Fashion-MNIST's files have no hash that would catch it). Here the same
files, from the same URLs, go through ``dcnn_core.downloads`` — a timeout, a temporary file renamed into place, the
hashes keras publishes — into Keras's own cache folder (``$KERAS_HOME/datasets``, by default ``~/.keras/datasets``), so
files Keras downloaded before are reused. They are read with numpy as keras reads them; a file that cannot be read
(a damaged gzip, for the set without a hash) is deleted, so the next load fetches it again instead of failing forever.
Each process downloads a file once: the server's page cache keeps the loaded set, and the files stay on disk.
"""

from __future__ import annotations

import gzip
import logging
import os
import pickle
import tarfile
import zlib
from dataclasses import dataclass

import numpy as np

from dcnn_core import downloads

logger = logging.getLogger(__name__)

KERAS_DATASETS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
FASHION_FILES = ("train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz")
CIFAR_MEMBERS = tuple(f"cifar-10-batches-py/{name}" for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"))
_UNREADABLE = (OSError, EOFError, ValueError, KeyError, zlib.error, tarfile.TarError, pickle.UnpicklingError)


@dataclass(frozen=True)
class SourceFile:
    """One file of a data set: its name in the cache folder and where it comes from (with keras's hash, if it has one)."""

    name: str
    remote: downloads.Remote


SOURCES: dict[str, tuple[SourceFile, ...]] = {
    "fashion_mnist": tuple(SourceFile(f"fashion-mnist/{name}", downloads.Remote(KERAS_DATASETS_URL + name)) for name in FASHION_FILES),
    "mnist": (
        SourceFile("mnist.npz", downloads.Remote(
            KERAS_DATASETS_URL + "mnist.npz", "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1")),
    ),
    "cifar10": (
        SourceFile("cifar-10-python.tar.gz", downloads.Remote(
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce")),
    ),
}  # fmt: skip


def cache_dir() -> str:
    """Keras's data-set cache: ``$KERAS_HOME/datasets``, by default ``~/.keras/datasets``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets")


def load_arrays(name: str):
    """``((x_train, y_train), (x_test, y_test))`` of a downloading set, as keras.datasets gives them.

    Raises ``downloads.DownloadFailed`` (its text is for the server log) when a file cannot be had or read.
    """
    files = SOURCES[name]
    paths = [downloads.fetch(source.remote, os.path.join(cache_dir(), source.name)) for source in files]
    try:
        return _READERS[name](paths)
    except _UNREADABLE as error:
        for path in paths:  # the next load fetches them again instead of failing on the same files forever
            if os.path.exists(path):
                os.remove(path)
        logger.error("Deleted the files of %s, which could not be read: %s", name, error)
        raise downloads.DownloadFailed(f"{name}: the cached files could not be read ({error})") from error


def _idx(path: str, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as file:  # reading to the end checks the gzip CRC: a damaged file raises here
        return np.frombuffer(file.read(), np.uint8, offset=offset)


def _read_fashion(paths: list[str]):
    y_train, x_train, y_test, x_test = (_idx(path, 8 if "labels" in os.path.basename(path) else 16) for path in paths)
    return (x_train.reshape(len(y_train), 28, 28), y_train), (x_test.reshape(len(y_test), 28, 28), y_test)


def _read_mnist(paths: list[str]):
    with np.load(paths[0], allow_pickle=False) as file:
        return (file["x_train"], file["y_train"]), (file["x_test"], file["y_test"])


def _read_cifar10(paths: list[str]):
    """The python-pickled batches of the (sha256-checked) archive, as keras.datasets.cifar10 reads them."""
    images, labels = [], []
    with tarfile.open(paths[0], "r:gz") as archive:
        for member in CIFAR_MEMBERS:
            file = archive.extractfile(member)
            if file is None:
                raise KeyError(f"{member} is not a file in the archive")
            batch = pickle.load(file, encoding="bytes")
            images.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(np.asarray(batch[b"labels"], np.uint8).reshape(-1, 1))
    return (np.concatenate(images[:-1]), np.concatenate(labels[:-1])), (images[-1], labels[-1])


_READERS = {"fashion_mnist": _read_fashion, "mnist": _read_mnist, "cifar10": _read_cifar10}


def read_folder(name: str, folder: str):
    """``load_arrays``'s result from files already in ``folder`` (Keras's cache layout), never fetched nor hash-checked.

    For data brought to an offline machine by other means (``bench/real_sets.py``); the app always uses ``load_arrays``.
    """
    return _READERS[name]([os.path.join(folder, source.name) for source in SOURCES[name]])
