"""Training FLOP/s of each preset as a fraction of the CPU's peak, and of a dense matmul measured beside it.

Training FLOPs per image ≈ 3 × forward multiply-adds × 2: the backward pass costs about twice the
forward pass (gradients for the inputs and for the weights), and one multiply-add is 2 FLOPs. The
forward multiply-adds come from ``dcnn_core.design.plan.analyse`` (convolutions and dense layers only:
activations, pooling, batch norm and the optimizer step are left out, so the figure is a slight
under-count). Images per second: one warm epoch of ``model.fit`` on random uint8 28×28×1 images
(10 classes, adam, the first epoch untimed), timed from ``on_epoch_begin`` to ``on_epoch_end``.

Peak = cores × clock × FLOPs per cycle per core, where
- clock is "cpu MHz" from /proc/cpuinfo (under a hypervisor this is the nominal clock; turbo is ignored);
- FLOPs per cycle comes from the widest fp32 FMA in the CPU flags: AVX-512F + FMA → 2 FMA units × 16 fp32
  lanes × 2 = 64; AVX2 + FMA → 2 × 8 × 2 = 32; AVX → 16; else SSE → 8 (two full-width FMA units assumed);
- cores is both the whole machine and the cores TensorFlow may use here (its intra-op thread count).
AMD Zen 4 (family 25, model ≥ 16) runs 512-bit instructions as two 256-bit halves (32 fp32 FLOPs per
cycle at most) but boosts its clock above the nominal "cpu MHz", so the flag rule is kept and a note
is printed; the matmul column below is the practical reference.

Because the machine is shared, each epoch is paired with a burst of 1024×1024 fp32 matmuls on the
same threads, in alternating order: the ratio CNN FLOP/s ÷ matmul FLOP/s says how close training
comes to the best this TensorFlow build reaches on this CPU, whatever the load.

``--precision both`` trains each preset in float32 and under Keras's ``mixed_bfloat16`` policy (the output
layer kept float32, as the app builds it), the two epochs of a repeat in alternating order, and prints
bfloat16 ÷ float32 images per second: the measurement behind ``recipes.BFLOAT16_FASTER``. A CPU without
native bfloat16 (no ``avx512_bf16`` / ``amx_bf16`` flag) emulates it, and the app keeps float32 there.

    python bench/flops.py [--repeats 3] [--images 4096] [--threads N] [--precision float32|bfloat16|both] [--presets "Simple CNN" ...]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _common import cpu_flags, print_header, summarise

CNN_PRESETS = ["LeNet-5", "Simple CNN", "VGG-style mini", "ResNet-style mini", "MobileNet-style mini"]


def flops_per_cycle() -> tuple[int, str]:
    flags = cpu_flags()
    if "avx512f" in flags and "fma" in flags:
        return 64, "AVX-512F + FMA: 2 units × 16 fp32 × 2"
    if "avx2" in flags and "fma" in flags:
        return 32, "AVX2 + FMA: 2 units × 8 fp32 × 2"
    if "avx" in flags:
        return 16, "AVX: 8 fp32 add + 8 fp32 mul"
    return 8, "SSE: 4 fp32 add + 4 fp32 mul"


def cpu_info() -> tuple[float, int, int]:
    mhz, family, model = 0.0, 0, 0
    for line in open("/proc/cpuinfo").read().splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "cpu MHz" and not mhz:
            mhz = float(value)
        elif key == "cpu family" and not family:
            family = int(value)
        elif key == "model" and not model:
            model = int(value)
    return mhz, family, model


def epoch_timer(keras):
    """A callback that appends each epoch's wall seconds to its ``seconds`` list."""

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

    return EpochTimer()


def matmul_burst(tf, seconds: float = 1.0) -> float:
    """FLOP/s of back-to-back 1024×1024 fp32 matmuls for about ``seconds``."""
    a = tf.random.stateless_uniform((1024, 1024), seed=(1, 2))
    b = tf.random.stateless_uniform((1024, 1024), seed=(3, 4))
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        tf.linalg.matmul(a, b).numpy()
        count += 1
    return count * 2 * 1024**3 / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="epoch/matmul pairs per preset (default 3)")
    parser.add_argument("--images", type=int, default=4096, help="images per timed epoch (default 4096)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="DCNN_TF_THREADS (default: every usable core, "
                        "the app's default)")  # fmt: skip
    parser.add_argument("--presets", nargs="+", default=CNN_PRESETS)
    parser.add_argument("--precision", choices=("float32", "bfloat16", "both"), default="float32")
    args = parser.parse_args()
    os.environ["DCNN_TF_THREADS"] = str(args.threads)
    policies = {"float32": ["float32"], "bfloat16": ["mixed_bfloat16"], "both": ["float32", "mixed_bfloat16"]}[args.precision]
    print_header("Training FLOP/s as a fraction of peak")
    from dcnn_core.design import plan
    from dcnn_core.design import spec as model_spec
    from dcnn_core.design.build import build_model
    from dcnn_core.runtime import cpu_has_bfloat16, dtype_policy, import_keras

    keras = import_keras()
    import tensorflow as tf

    threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
    cores = os.cpu_count() or 1
    mhz, family, model = cpu_info()
    per_cycle, why = flops_per_cycle()
    peak_core = mhz * 1e6 * per_cycle
    zen4 = family == 25 and model >= 16 and per_cycle == 64
    print(f"Peak per core: {mhz:.0f} MHz × {per_cycle} FLOPs/cycle ({why}) = {peak_core / 1e9:.1f} GFLOP/s; "
          f"machine ({cores} cores) {cores * peak_core / 1e9:.1f} GFLOP/s; TensorFlow's {threads} intra-op thread(s) "
          f"{threads * peak_core / 1e9:.1f} GFLOP/s", flush=True)  # fmt: skip
    if "mixed_bfloat16" in policies:
        print(f"Native bfloat16 on this CPU: {'yes' if cpu_has_bfloat16() else 'no (emulated: the app keeps float32)'}", flush=True)
    if zen4:
        print("Note: AMD Zen 4 splits 512-bit FMAs into two 256-bit halves (32 fp32 FLOPs/cycle at most), but its clock boosts "
              "above the nominal MHz above; the matmul column is the practical reference.")  # fmt: skip
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.images, 28, 28, 1), dtype=np.uint8)
    y = rng.integers(0, 10, args.images)
    rows, speedups = [], {}
    for name in args.presets:
        spec = model_spec.preset(name)
        analysis = plan.analyse(spec, (28, 28, 1), 10)
        train_flops = 3 * 2 * analysis.total_mult_adds
        epochs = {}
        for policy in policies:
            keras.utils.set_random_seed(0)
            with dtype_policy(policy):
                network = build_model(spec, (28, 28, 1), 10, float32_output=policy != "float32")
            network.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            timer = epoch_timer(keras)

            def epoch(network=network, timer=timer) -> float:
                network.fit(x, y, batch_size=args.batch_size, epochs=1, callbacks=[timer], verbose=0)
                return args.images / timer.seconds[-1]

            epoch()  # untimed: traces the graph
            epochs[policy] = epoch
        pairs = {policy: [] for policy in policies}
        for repeat in range(args.repeats):
            order = policies if repeat % 2 == 0 else policies[::-1]
            dense = matmul_burst(tf) if repeat % 2 else None
            rates = {policy: epochs[policy]() for policy in order}
            dense = dense or matmul_burst(tf)
            for policy in policies:
                pairs[policy].append((rates[policy], dense))
        for policy in policies:
            rates = summarise([rate for rate, _ in pairs[policy]])
            achieved = summarise([rate * train_flops for rate, _ in pairs[policy]])
            versus_matmul = summarise([rate * train_flops / dense for rate, dense in pairs[policy]])
            dense = summarise([dense for _, dense in pairs[policy]])
            label = name if len(policies) == 1 else f"{name} ({policy})"
            rows.append((label, analysis.total_mult_adds, train_flops, rates, achieved, dense, versus_matmul))
            print(f"  {label}: {rates.format('.0f', ' img/s')}; CNN {achieved.median / 1e9:.1f} GFLOP/s, "
                  f"matmul {dense.median / 1e9:.1f} GFLOP/s → ratio {versus_matmul.format('.3f')}", flush=True)  # fmt: skip
        if len(policies) == 2:
            speedups[name] = summarise([bf / fp for (fp, _), (bf, _) in zip(pairs["float32"], pairs["mixed_bfloat16"], strict=True)])
    print()
    header = ("| Preset | forward MACs/img | train FLOPs/img | img/s (median, min–max) | GFLOP/s | ÷ machine peak | ÷ peak of TF's threads "
              "| ÷ 1024² matmul beside it (median, min–max) |")  # fmt: skip
    print(header)
    print("|" + "---|" * header.count(" | ") + "---|")
    for name, macs, train_flops, rates, achieved, _dense, versus in rows:
        machine, own = achieved.median / (cores * peak_core), achieved.median / (threads * peak_core)
        print(f"| {name} | {macs / 1e6:.2f} M | {train_flops / 1e6:.1f} M | {rates.median:.0f} ({rates.low:.0f}–{rates.high:.0f}) "
              f"| {achieved.median / 1e9:.2f} | {machine:.1%} | {own:.1%} "
              f"| {versus.median:.2f} ({versus.low:.2f}–{versus.high:.2f}) |")  # fmt: skip
    if speedups:
        print()
        print("| Preset | bfloat16 ÷ float32 images/s, per repeat (median, min–max) |")
        print("|---|---|")
        for name, ratio in speedups.items():
            print(f"| {name} | {ratio.format('.2f')} |")
    matmul = summarise([row[5].median / 1e9 for row in rows])
    print(f"1024² fp32 matmul on the same threads, GFLOP/s: {matmul.format('.1f')} (over the per-preset medians); "
          f"÷ peak of TF's threads {matmul.median * 1e9 / (threads * peak_core):.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
