"""Transfer learning on a small image set: from scratch vs a frozen backbone vs a fine-tuned one.

For each backbone and input size, three models are trained on the same images with the same seed:
*from scratch* (the Simple CNN preset), *frozen* (the backbone frozen, only the head trained: phase 1)
and *fine-tuned* (phase 1, then the top ``--fine-tune-layers`` backbone layers at a tenth of the
rate: phase 2). Printed per model: test accuracy, training time, images per second and the
process's peak resident memory above what it held before the model was built (RSS, psutil,
sampled every 0.1 s; the data set is loaded before).

Weights: ``--weights-dir DIR`` holds keras's files (``weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5``,
``efficientnetb0_notop.h5``). Without it the backbones are initialised at random: the times and
memory are the same, the accuracies are not transfer learning and say nothing about it.

Data: ``--zip FILE`` (one folder per class, as the Data page imports it), or by default the
generated Shapes set in colour at 64 px with ``--per-class`` images per class (a stand-in for a
user's few dozen photos; a photo-like set shows the benefit of ImageNet features much better).

    python bench/transfer.py [--weights-dir DIR] [--zip FILE] [--sizes 96 128] [--epochs 5] [--fine-tune-epochs 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace

from _common import print_header, rss_bytes

MIB = 2**20


@dataclass(frozen=True)
class Result:
    model: str
    accuracy: float
    seconds: float
    images_per_second: float
    peak_mib: float
    trainable: int
    total: int


class PeakMemory:
    """The process's peak RSS while the block runs, sampled by a thread."""

    def __enter__(self):
        self.start = self.peak = rss_bytes(os.getpid(), children=False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, rss_bytes(os.getpid(), children=False))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.start) / MIB


def load_data(args):
    from dcnn_core.data import custom_data, datasets

    if args.zip:
        with open(args.zip, "rb") as file:
            return custom_data.import_zip(file.read(), os.path.basename(args.zip)).dataset
    return datasets.load_shapes(count_per_class=args.per_class, image_size=64, colour=True, seed=args.seed)


def train(spec, dataset, args, fine_tune: bool) -> Result:
    import numpy as np

    from dcnn_core.design import backbones
    from dcnn_core.design.build import build_model
    from dcnn_core.runtime import import_keras
    from dcnn_core.training.config import TrainConfig

    keras = import_keras()
    keras.utils.set_random_seed(args.seed)
    config = TrainConfig(learning_rate=args.learning_rate, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    images = len(dataset.x_train)
    with PeakMemory() as memory:
        model = build_model(spec, dataset.input_shape, dataset.num_classes, weights_dir=args.weights_dir)
        started = time.perf_counter()
        total = model.count_params()
        trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
        model.compile(keras.optimizers.Adam(config.learning_rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(dataset.x_train, dataset.y_train, epochs=config.epochs, batch_size=config.batch_size, verbose=0)
        epochs = config.epochs
        if fine_tune and backbones.fine_tunes(spec):
            phase2 = backbones.fine_tune_config(config, spec.backbone)
            backbones.unfreeze_top(model, spec.backbone.fine_tune_layers)
            model.compile(keras.optimizers.Adam(phase2.learning_rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
            epochs += phase2.epochs
            model.fit(dataset.x_train, dataset.y_train, initial_epoch=config.epochs, epochs=epochs, batch_size=config.batch_size, verbose=0)
        seconds = time.perf_counter() - started
        _, accuracy = model.evaluate(dataset.x_test, dataset.y_test, verbose=0)
    return Result(spec.name, accuracy, seconds, images * epochs / seconds, memory.growth_mib, trainable, total)


def run_one(args) -> Result:
    """Train the model that ``args.one`` names ("scratch:0:frozen", "efficientnet_b0:96:fine"), the data loaded first."""
    from dcnn_core.design import backbones, spec
    from dcnn_core.runtime import import_keras

    import_keras()
    dataset = load_data(args)
    name, size, mode = args.one.split(":")
    if name == "scratch":
        return train(spec.preset("Simple CNN"), dataset, args, fine_tune=False)
    base = backbones.default_spec(name, "imagenet" if args.weights_dir else "random")
    backbone = replace(base.backbone, input_size=int(size), fine_tune_layers=args.fine_tune_layers, fine_tune_epochs=args.fine_tune_epochs)
    return train(replace(base, backbone=backbone), dataset, args, fine_tune=mode == "fine")


def in_child(one: str) -> Result:
    """One model in a fresh process, so its memory is its own."""
    command = [sys.executable, __file__, *[a for a in sys.argv[1:]], "--one", one]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"})
    return Result(**json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", help="folder with keras's ImageNet weight files; without it: random initialisation")
    parser.add_argument("--zip", help="a zip of class folders (your own images); default: generated Shapes in colour")
    parser.add_argument("--per-class", type=int, default=30, help="Shapes images per class (default 30)")
    parser.add_argument("--backbones", nargs="+", default=["mobilenet_v3_small", "efficientnet_b0"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[96, 128], help="backbone input sizes in pixels")
    parser.add_argument("--epochs", type=int, default=5, help="phase 1 epochs (and the from-scratch model's)")
    parser.add_argument("--fine-tune-epochs", type=int, default=3)
    parser.add_argument("--fine-tune-layers", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: train one model in this process, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(dataclasses.asdict(run_one(args))))
        return
    print_header("Transfer learning: from scratch vs frozen vs fine-tuned")
    dataset = load_data(args)
    print(f"Data: {dataset.title}, {len(dataset.x_train)} training and {len(dataset.x_test)} test images, "
          f"{dataset.num_classes} classes, {'×'.join(map(str, dataset.input_shape))}. Weights: "
          f"{args.weights_dir or 'random initialisation (NOT transfer learning: accuracies below say nothing about it)'}.\n")  # fmt: skip
    rows = [("from scratch", "—", in_child("scratch:0:frozen"))]
    for name in args.backbones:
        for size in args.sizes:
            rows.append(("frozen", size, in_child(f"{name}:{size}:frozen")))
            rows.append((f"fine-tuned (top {args.fine_tune_layers})", size, in_child(f"{name}:{size}:fine")))
    print("| Model | Mode | Input px | Test accuracy | Train time (s) | Images/s | Peak RSS growth (MiB) | Trainable / total params |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, size, r in rows:
        print(f"| {r.model} | {mode} | {size} | {r.accuracy:.3f} | {r.seconds:.1f} | {r.images_per_second:.0f} | "
              f"{r.peak_mib:.0f} | {r.trainable:,} / {r.total:,} |")  # fmt: skip


if __name__ == "__main__":
    main()
