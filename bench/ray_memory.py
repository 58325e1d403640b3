"""The web server's memory when trainings run on Ray: does it stay flat as the room grows?

A Ray head node of its own (``ray start --head --block``, 2 CPUs, a temporary folder) and, in this process, the
app's Ray engine (``RayEngine``, 2 workers) — what the web server holds when ``DCNN_RAY_ADDRESS`` is set. Rooms of
``--rooms`` sizes (default 2 and 8) each submit that many Simple CNN runs on Shapes (600 per class, 28×28, through
the door, one owner each) and wait for all to end. Every 0.5 s it reads this process's RSS (the web side) and the
head node's process tree (the cluster: GCS, raylet, the workers with their TensorFlow runtimes).

    python bench/ray_memory.py [--rooms 2 8] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine_lines, rss_bytes  # noqa: E402

from dcnn_core.training.engines.ray_setup import RAY_ENVIRONMENT  # noqa: E402

for name, value in RAY_ENVIRONMENT.items():  # as the app does, before Ray is imported
    os.environ.setdefault(name, value)

MB = 2**20
SHAPES = {"key": "shapes", "options": {"count_per_class": 600, "image_size": 28, "colour": False, "seed": 0}}


def _sample(me, head_pid: int, peak: dict, done: threading.Event) -> None:
    """The largest RSS of this process (the web side) and of the head node's tree (the cluster), every 0.5 s."""
    while not done.is_set():
        peak["web"] = max(peak["web"], me.memory_info().rss)
        peak["cluster"] = max(peak["cluster"], rss_bytes(head_pid))
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, nargs="+", default=[2, 8], help="trainings submitted at once, one room after another")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    import psutil

    from dcnn_core.design import spec
    from dcnn_core.room.rules import RoomLimits, ServerRules
    from dcnn_core.training.config import TrainConfig
    from dcnn_core.training.description import RunDescription
    from dcnn_core.training.engines.ray_engine import RayEngine
    from dcnn_core.training.runs import RunStore
    from tests.browser.conftest import _free_port
    from tests.helpers import start_ray_head

    print("# The web server's memory with trainings on Ray")
    print("Command: python bench/ray_memory.py " + " ".join(sys.argv[1:]))
    for line in machine_lines():
        print(line)
    port, temp_dir, runs_dir = _free_port(), tempfile.mkdtemp(prefix="rt", dir="/tmp"), tempfile.mkdtemp(prefix="dcnn-ray-bench-")
    head = start_ray_head(port, temp_dir, cpus=2)
    limits = RoomLimits(max_queue=None, max_runs_per_owner=None, max_disk_mb_per_owner=None)
    engine = RayEngine(RunStore(runs_dir), ServerRules(limits, slots=2), address=f"127.0.0.1:{port}", workers=2)
    me = psutil.Process()
    try:
        engine.submit(RunDescription(spec.preset("Simple CNN"), TrainConfig(epochs=1), dict(SHAPES), owner="warm-up"))
        while any(run.active for run in engine.runs()):  # the workers import TensorFlow and load the set once
            time.sleep(0.5)
        print(f"\nWeb side after connecting and one warm-up run: {me.memory_info().rss / MB:.0f} MiB")
        print("\n| Room | web process RSS before / peak | cluster RSS peak (head node tree) | all ended in |")
        print("|---|---|---|---|")
        for size in args.rooms:
            before = me.memory_info().rss
            peak = {"web": before, "cluster": 0}
            done = threading.Event()

            sampler = threading.Thread(target=_sample, args=(me, head.pid, peak, done), daemon=True)
            sampler.start()
            began = time.monotonic()
            for index in range(size):
                config = TrainConfig(epochs=args.epochs, seed=index)
                engine.submit(RunDescription(spec.preset("Simple CNN"), config, dict(SHAPES), owner=f"room{size}-{index}"))
            while any(run.active for run in engine.runs()):
                time.sleep(0.5)
            done.set()
            sampler.join()
            print(f"| {size} trainings | {before / MB:.0f} / {peak['web'] / MB:.0f} MiB | {peak['cluster'] / MB:.0f} MiB | "
                  f"{time.monotonic() - began:.0f} s |")  # fmt: skip
    finally:
        engine.close()
        import ray

        ray.shutdown()
        head.send_signal(signal.SIGTERM)
        head.wait(60)
        shutil.rmtree(temp_dir, ignore_errors=True)
        shutil.rmtree(runs_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
