"""Seconds and memory of one training step for designs of growing cost: what the admission limits are set from.

Each design trains on random 128×128×3 uint8 images (the largest own images the app makes), one TensorFlow
thread (the app's default on 2 cores), in a fresh Python process so that its memory high-water mark is its own.
For each design: forward multiply-adds per batch and activation bytes per batch (``plan.analyse`` × batch size:
what ``ServerRules`` checks), the median seconds of a warm training step (``train_on_batch``, after one untimed
step that traces the function), training throughput in forward multiply-adds per second (a training step is
counted as about 3× the forward pass), and the process's peak RSS over what it held after building the model.

    python bench/step_cost.py [--batch 32] [--steps 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _common import ROOT, print_header

# (name, [(filters, conv_layers, stride, pooling), ...]) on 128×128×3: growing cost, the kind a slider reaches.
DESIGNS = {
    "Simple CNN (preset, flatten → no parameter limit here)": "Simple CNN",
    "ResNet-style mini (preset)": "ResNet-style mini",
    "MobileNet-style mini (preset)": "MobileNet-style mini",
    "MobileNetV3-Small backbone at 128 px (random weights, phase 1)": "backbone",
    "16 filters, 1 conv": [(16, 1, 1, "max"), (32, 1, 1, "max")],
    "32 filters, 2 convs": [(32, 2, 1, "max"), (64, 1, 1, "max")],
    "64 filters, 2 convs": [(64, 2, 1, "max"), (64, 1, 1, "max")],
    "64 filters, 3 convs": [(64, 3, 1, "max"), (128, 1, 1, "max")],
    "128 filters, 2 convs": [(128, 2, 1, "max"), (128, 1, 1, "max")],
    "At both default limits: 16×2, 64×2, 128": [(16, 2, 1, "max"), (64, 2, 1, "max"), (128, 1, 1, "max")],
}
AT_THE_LIMITS = "At both default limits: 16×2, 64×2, 128"


def _spec(layout):
    from dcnn_core.design import spec

    if layout == "backbone":
        return spec.ModelSpec(name="bench", backbone=spec.Backbone(input_size=128, weights="random"))
    if isinstance(layout, str):
        return spec.preset(layout)
    blocks = [spec.ConvBlock(filters=f, conv_layers=n, stride=s, pooling=p) for f, n, s, p in layout]
    return spec.ModelSpec(name="bench", blocks=blocks, head=spec.Head(pooling="global_average"))


def measure(name: str, batch: int, steps: int) -> dict:
    """One design, in this process: its plan costs, warm step seconds and peak memory over the built model's."""
    import resource
    import time

    import numpy as np
    import psutil

    from dcnn_core.data.datasets import Dataset
    from dcnn_core.design import plan
    from dcnn_core.training.config import TrainConfig
    from dcnn_core.training.lifecycle import build_and_compile

    shape, classes = (128, 128, 3), 10
    spec = _spec(DESIGNS[name])
    analysis = plan.analyse(spec, shape, classes)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, *shape), dtype=np.uint8)
    y = rng.integers(0, classes, batch)
    data = Dataset("bench", "bench", "random", x, y, x[:1], y[:1], tuple(str(i) for i in range(classes)), False)
    model = build_and_compile(spec, data, TrainConfig(batch_size=batch))
    before = psutil.Process().memory_info().rss
    model.train_on_batch(x, y)  # traces the step
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        model.train_on_batch(x, y)
        seconds.append(time.perf_counter() - started)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "name": name, "mult_adds": analysis.total_mult_adds * batch, "activations": analysis.activation_bytes * batch,
        "step_s": float(np.median(seconds)), "peak_over_model": max(0, peak - before),
    }  # fmt: skip


def stop_latency(repeats: int, calls_of_four: bool = False) -> list[float]:
    """Seconds from Stop to the run's end for the design at the default limits, trained through the engine as the app does.

    ``calls_of_four``: as before issue 24, 4 batches in every call into TensorFlow whatever the design.
    """
    import tempfile
    import time
    from pathlib import Path

    import numpy as np

    from dcnn_core.data.datasets import Dataset
    from dcnn_core.room.rules import ServerRules
    from dcnn_core.training import pacing
    from dcnn_core.training.config import TrainConfig
    from dcnn_core.training.description import RunDescription
    from dcnn_core.training.engines.local import LocalEngine
    from dcnn_core.training.runs import RunStore

    if calls_of_four:
        pacing.CALL_S = 1e9  # every design "cheap": the most batches per call

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (640, 128, 128, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 640)
    data = Dataset("bench", "bench", "random", x, y, x[:64], y[:64], tuple(str(i) for i in range(10)), False)
    engine = LocalEngine(RunStore(Path(tempfile.mkdtemp())), ServerRules(), resolve=lambda reference: data)
    seconds = []
    for _ in range(repeats):
        config = TrainConfig(epochs=1, batch_size=32, validation_split=0.0)
        run_id = engine.submit(RunDescription(_spec(DESIGNS[AT_THE_LIMITS]), config, {"key": "bench"}, owner="bench"))
        while engine.progress(run_id).batch < 1:
            time.sleep(0.02)
        asked = time.monotonic()
        engine.stop(run_id)
        engine.wait(run_id)
        seconds.append(time.monotonic() - asked)
        engine.delete(run_id)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--designs", nargs="*", choices=list(DESIGNS), help="these designs only (default: all)")
    parser.add_argument("--stop-repeats", type=int, default=3, help="Stops timed for the design at the default limits")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure this design and print JSON
    parser.add_argument("--stops", action="store_true", help=argparse.SUPPRESS)  # internal: time Stop and print JSON
    parser.add_argument("--calls-of-four", action="store_true", help=argparse.SUPPRESS)  # internal: ... as before issue 24
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.batch, args.steps)))
        return
    if args.stops:
        print(json.dumps(stop_latency(args.stop_repeats, args.calls_of_four)))
        return
    print_header("Training-step cost by design (128×128×3, random images)")
    print(f"batch {args.batch}, {args.threads} TensorFlow thread(s), median of {args.steps} warm steps\n")
    print("| Design | forward GMAC / batch | activations / batch (plan) | step s | training GMAC/s (3× fwd) | peak RSS over the model |")
    print("|---|---|---|---|---|---|")
    environment = {**os.environ, "DCNN_TF_THREADS": str(args.threads), "TF_CPP_MIN_LOG_LEVEL": "2"}
    for name in args.designs or DESIGNS:
        command = [sys.executable, __file__, "--one", name, "--batch", str(args.batch), "--steps", str(args.steps)]
        output = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=ROOT, check=True).stdout
        row = json.loads(output.strip().splitlines()[-1])
        gmac = row["mult_adds"] / 1e9
        print(f"| {name} | {gmac:.2f} | {row['activations'] / 2**20:,.0f} MiB | {row['step_s']:.3f} | "
              f"{3 * gmac / row['step_s']:.1f} | {row['peak_over_model'] / 2**20:,.0f} MiB |", flush=True)  # fmt: skip
    if args.stop_repeats:
        for label, extra in (("paced (now)", []), ("4 batches per call (before)", ["--calls-of-four"])):
            command = [sys.executable, __file__, "--stops", "--stop-repeats", str(args.stop_repeats), *extra]
            output = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=ROOT, check=True).stdout
            seconds = json.loads(output.strip().splitlines()[-1])
            print(f"Stop → run ended, '{AT_THE_LIMITS}', batch 32, LocalEngine with the default limits, {label}: "
                  f"{', '.join(f'{value:.2f}' for value in seconds)} s")  # fmt: skip


if __name__ == "__main__":
    main()
