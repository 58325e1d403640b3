"""Memory of a shared server: Streamlit idle, with 10 browser sessions, and with 4 trainings on 60,000 images.

Part 1, the web server: ``streamlit run app.py`` (and, for reference, a one-line hello-world app) is
started and its resident memory (psutil RSS of the process and its children) read when idle, then
with 10 headless Chromium sessions (one browser context each) on the home page, then with all 10 on
the Data page (which imports TensorFlow and loads the shared data set: offline, Fashion-MNIST fails
and the Shapes set is shown instead). The browser's own memory is not counted: it is the visitors'.

Part 2, the trainings: a fresh Python process imports what the server imports for training
(dcnn_core, plotly, TensorFlow through ``dcnn_core.runtime``), builds a Fashion-MNIST-sized data set
from generated uint8 arrays (60,000 + 10,000 images, 28×28), and submits 4 Simple CNN runs (4 owners)
through the engine door, ``TrainingEngine.submit``, implemented in-process by ``LocalEngine`` with one slot
(the app's default on 2 cores: the runs take turns), with the Train page's defaults (batch 32, validation
split 0.1); RSS is sampled every 0.2 s while they run ``--epochs`` epochs, each run saved when it ends as
the app saves it. The runs' data-set reference names Fashion-MNIST, as the app's would, so a run is saved
like a Fashion-MNIST run (no copy of its images); the engine's ``resolve`` hands over the generated arrays.
Its peak, and its growth over the same process before the runs started, are reported; the same again with
one run alone, in another process, gives the cost of each extra training.

RSS is a count of bytes, not a time: it does not depend on how loaded the machine is, so these
figures are absolute. The ratio to the hello-world server is printed as a reference.

    python bench/memory.py [--sessions 10] [--epochs 2] [--images 60000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time

from _common import (
    ROOT,
    chromium,
    hello_app,
    local_engine,
    print_header,
    rss_bytes,
    running_server,
    server_env,
    temporary_folder,
    wait_rendered,
)

MIB = 2**20
JOBS = 4  # trainings sharing the processor in part 2


def settled_rss(pid: int, seconds: float = 3.0) -> int:
    """RSS after the process has been left alone a moment (the largest of a few reads)."""
    readings = []
    for _ in range(int(seconds / 0.5)):
        time.sleep(0.5)
        readings.append(rss_bytes(pid))
    return max(readings)


def server_figures(browser, script, home_title: str, data_link: str | None, sessions: int, scratch) -> dict[str, int]:
    env = server_env(str(scratch / "runs"))
    figures = {}
    with running_server(script, scratch, env) as server:
        pid = server.process.pid
        figures["idle"] = settled_rss(pid)
        contexts, pages = [], []
        for _ in range(sessions):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(180_000)
            page.goto(server.url + "/")
            wait_rendered(page, home_title, timeout_ms=180_000)
            contexts.append(context)
            pages.append(page)
        figures["home"] = settled_rss(pid)
        if data_link is not None:
            for page in pages:
                page.locator('[data-testid="stSidebarNav"] a').filter(has_text=data_link).first.click()
                wait_rendered(page, "Data", timeout_ms=180_000)
            figures["data"] = settled_rss(pid)
        for context in contexts:
            context.close()
    return figures


def trainings_worker(epochs: int, images: int, jobs_count: int = JOBS) -> None:
    """Part 2, in its own process: prints one JSON line with the RSS figures."""
    os.environ.setdefault("DCNN_TF_THREADS", "1")
    import numpy as np
    import plotly.graph_objects  # noqa: F401  (the server has it loaded too)

    from dcnn_core.data import datasets
    from dcnn_core.design import spec as model_spec
    from dcnn_core.runtime import import_keras
    from dcnn_core.training.description import RunDescription
    from dcnn_core.training.job import FINISHED, TrainConfig

    pid = os.getpid()
    start = rss_bytes(pid, children=False)
    import_keras()
    after_import = rss_bytes(pid, children=False)
    rng = np.random.default_rng(0)
    tests = images // 6
    dataset = datasets.make_dataset(
        "generated", "Generated, Fashion-MNIST-sized", "bench/memory.py",
        rng.integers(0, 256, (images, 28, 28), dtype=np.uint8), rng.integers(0, 10, images),
        rng.integers(0, 256, (tests, 28, 28), dtype=np.uint8), rng.integers(0, 10, tests),
        datasets.FASHION_MNIST_CLASSES, light_on_dark=True,
    )  # fmt: skip
    engine = local_engine(lambda reference: dataset, slots=1, prefix="bench-memory-runs-")  # one slot: the runs take turns
    before_jobs = rss_bytes(pid, children=False)
    config = TrainConfig(epochs=epochs)  # the Train page's defaults: adam 1e-3, batch 32, validation split 0.1
    reference = {"key": "fashion_mnist", "options": {}}  # saved as a built-in set is: by name, without its images
    run_ids = [
        engine.submit(RunDescription(model_spec.preset("Simple CNN"), dataclasses.replace(config, seed=seed), reference,
                                     owner=f"bench-{seed}"))  # one active run per person: an owner each
        for seed in range(jobs_count)
    ]  # fmt: skip
    peak = before_jobs
    samples = 0
    started = time.perf_counter()
    while not all(engine.wait(run_id, 0) for run_id in run_ids):
        peak = max(peak, rss_bytes(pid, children=False))
        samples += 1
        time.sleep(0.2)
    peak = max(peak, rss_bytes(pid, children=False))
    seconds = time.perf_counter() - started
    outcome = [engine.progress(run_id) for run_id in run_ids]
    shutil.rmtree(engine.store.root, ignore_errors=True)
    if any(p.status != FINISHED for p in outcome):
        raise SystemExit(f"a training did not finish: {[(p.status, p.message) for p in outcome]}")
    result = {
        "start": start,
        "after_import": after_import,
        "before_jobs": before_jobs,
        "peak": peak,
        "samples": samples,
        "seconds": seconds,
    }
    print(json.dumps(result), flush=True)


def trainings_figures(epochs: int, images: int, jobs_count: int = JOBS) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--epochs", str(epochs), "--images", str(images),
               "--jobs", str(jobs_count)]  # fmt: skip
    env = {**os.environ, "DCNN_TF_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if finished.returncode != 0:
        raise SystemExit(f"the trainings worker failed:\n{finished.stderr[-3000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10, help="browser sessions (default 10)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each of the 4 trainings (default 2)")
    parser.add_argument("--images", type=int, default=60_000, help="training images of the generated set (default 60000)")
    parser.add_argument("--skip-server", action="store_true", help="only part 2")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=JOBS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        trainings_worker(args.epochs, args.images, args.jobs)
        return
    print_header("Memory: server RSS with sessions, and 4 trainings on a Fashion-MNIST-sized set")
    app, hello = {}, {}
    if not args.skip_server:
        scratch = temporary_folder("bench-memory-")
        with chromium() as browser:
            hello = server_figures(browser, hello_app(scratch / "hello"), "Hello", None, args.sessions, scratch)
            app = server_figures(browser, ROOT / "app.py", "DCNN Studio", "Data", args.sessions, scratch)
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"Part 2: 4 trainings × {args.epochs} epochs on {args.images:,} generated images… (minutes)", flush=True)
    training = trainings_figures(args.epochs, args.images)
    alone = trainings_figures(args.epochs, args.images, 1)
    print()
    print("| What | RSS | Includes |")
    print("|---|---|---|")
    if app:
        print(f"| Hello-world server, idle / {args.sessions} sessions | {hello['idle'] / MIB:.0f} / {hello['home'] / MIB:.0f} MiB | "
              "Streamlit alone (reference) |")  # fmt: skip
        print(f"| App server, idle after start | {app['idle'] / MIB:.0f} MiB ({app['idle'] / hello['idle']:.2f}× hello) | "
              "Streamlit only: app.py first runs on the first visit |")  # fmt: skip
        print(f"| App server, {args.sessions} sessions on Home | {app['home'] / MIB:.0f} MiB ({app['home'] / hello['home']:.2f}× hello) | "
              "+ session state, frame; no TensorFlow |")  # fmt: skip
        print(f"| App server, {args.sessions} sessions on Data | {app['data'] / MIB:.0f} MiB | "
              "+ TensorFlow imported, Shapes set loaded (shared), plotly figures |")  # fmt: skip
    data_mib = (args.images + args.images // 6) * 784 / MIB
    print(f"| Trainings process before the jobs | {training['before_jobs'] / MIB:.0f} MiB | TensorFlow, plotly, dcnn_core, "
          f"the {args.images:,} + {args.images // 6:,} uint8 images ({data_mib:.0f} MiB) |")  # fmt: skip
    print(f"| Trainings process, peak with 4 jobs | {training['peak'] / MIB:.0f} MiB | + 4 models, optimizer state, "
          f"4 tf.data pipelines over one shared copy of the images, each run saved as it ends; sampled {training['samples']} times "
          f"over {training['seconds']:.0f} s |")  # fmt: skip
    growth = training["peak"] - training["before_jobs"]
    extra = (training["peak"] - alone["peak"]) / (JOBS - 1)
    print()
    print(f"Growth from {JOBS} trainings taking turns: {growth / MIB:.0f} MiB; one training alone peaks at {alone['peak'] / MIB:.0f} MiB")
    print(
        f"Each extra training: {extra / MIB:.0f} MiB (peak with {JOBS} − peak with 1, over {JOBS - 1}) — "
        f"target ≤ 50 MiB: {'met' if extra <= 50 * MIB else 'NOT met'}"
    )
    if app:
        worst = app["data"] + growth
        print(f"Estimate for one server with {args.sessions} sessions on Data and 4 trainings running: "
              f"{app['data'] / MIB:.0f} + {growth / MIB:.0f} = {worst / MIB:.0f} MiB — target ≤ 1.5 GB (1431 MiB): "
              f"{'met' if worst <= 1.5e9 else 'NOT met'}")  # fmt: skip
    verdict = "met" if training["peak"] <= 1.5e9 else "NOT met"
    print(f"Trainings process peak alone: {training['peak'] / MIB:.0f} MiB — target ≤ 1.5 GB: {verdict}")


if __name__ == "__main__":
    main()
