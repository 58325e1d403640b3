"""A user's own images kept with a run (``data.npz``: uint8, compressed), within a size cap.

Built-in data sets are loaded again by name and never saved; a user's own images live nowhere else.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import numpy as np

from dcnn_core.data import datasets

DATA_FILE = "data.npz"
MB = 1024 * 1024
MAX_SAVED_DATA_BYTES = 64 * MB  # a user's own images larger than this (uncompressed) are not kept with the run
_ARRAYS = ("x_train", "y_train", "x_test", "y_test", "class_names")


def save(dataset: datasets.Dataset, dataset_ref: dict, staging: Path, previous: Path, max_bytes: int) -> dict:
    """Write ``dataset`` into ``staging`` if it is a user's own and fits ``max_bytes``; the run's ``data`` entry.

    ``previous`` is the run's folder as saved before (a continued run keeps the same images).
    """
    info = {"input_shape": list(dataset.input_shape), "class_names": list(dataset.class_names)}
    if dataset_ref.get("key") in datasets.REGISTRY:
        return info  # loadable again by name
    info |= {"key": dataset.key, "title": dataset.title, "source": dataset.source, "light_on_dark": dataset.light_on_dark}
    if (previous / DATA_FILE).is_file():  # the same run saved again (continued): the same images, already compressed
        _link_or_copy(previous / DATA_FILE, staging / DATA_FILE)
        return info | {"file": DATA_FILE}
    size = dataset.x_train.nbytes + dataset.x_test.nbytes
    if size > max_bytes:
        note = (f"Its images ({size / MB:.1f} MB) are more than the {max_bytes / MB:.1f} MB a run keeps, so they were "
                "not saved: after a restart it is a summary you can compare and delete, not evaluate or continue.")  # fmt: skip
        return info | {"file": None, "note": note}
    label_type = np.uint8 if dataset.num_classes <= 256 else np.uint16
    np.savez_compressed(
        staging / DATA_FILE,
        x_train=dataset.x_train.astype(np.uint8, copy=False), y_train=dataset.y_train.astype(label_type),
        x_test=dataset.x_test.astype(np.uint8, copy=False), y_test=dataset.y_test.astype(label_type),
        class_names=np.array(dataset.class_names, dtype=str),
    )  # fmt: skip
    return info | {"file": DATA_FILE}


def is_saved(folder: Path, info: dict) -> bool:
    """Whether the run in ``folder`` (its ``data`` entry: ``info``) kept its images."""
    return info.get("file") == DATA_FILE and (folder / DATA_FILE).is_file()


def load(folder: Path, info: dict, title: str, max_bytes: int) -> datasets.Dataset:
    """The images saved in ``folder``; ValueError if missing, too large or inconsistent.

    Args:
        info: the run's ``data`` entry (key, title, source, light_on_dark).
        title: the title to use when ``info`` has none.
    """
    if not is_saved(folder, info):
        raise ValueError("This run's images were not kept.")
    path = folder / DATA_FILE
    with zipfile.ZipFile(path) as archive:  # sizes before reading: a planted file must not fill memory
        if sum(entry.file_size for entry in archive.infolist()) > max_bytes + MB:
            raise ValueError("This run's saved images are larger than a run may keep.")
    with np.load(path, allow_pickle=False) as saved:
        arrays = {name: saved[name] for name in _ARRAYS}
    class_names = [str(name) for name in arrays["class_names"]]
    _check(arrays, len(class_names))
    return datasets.make_dataset(
        str(info.get("key", "custom")), str(info.get("title", title)), str(info.get("source", "Your own images, kept with the run")),
        arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], class_names, bool(info.get("light_on_dark", False)),
    )  # fmt: skip


def _check(arrays: dict[str, np.ndarray], num_classes: int) -> None:
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    if x_train.dtype != np.uint8 or x_test.dtype != np.uint8 or x_train.ndim != 4 or x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError("The saved images are not uint8 (N, H, W, C) arrays of one shape.")
    for x, y in ((x_train, arrays["y_train"]), (x_test, arrays["y_test"])):
        if y.ndim != 1 or len(y) != len(x) or y.dtype.kind not in "iu" or (len(y) and not 0 <= int(y.min()) <= int(y.max()) < num_classes):
            raise ValueError("The saved labels do not match the saved images and classes.")


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copy2(source, target)


__all__ = ["DATA_FILE", "MAX_SAVED_DATA_BYTES", "MB", "is_saved", "load", "save"]
