"""Training throughput through the dashboard's training engine, as a fraction of a plain ``model.fit``.

A: a run submitted through the engine door, ``TrainingEngine.submit`` (in-process ``LocalEngine``, one slot,
no room limits, as the Train page starts one: its worker thread, live-metrics callback and tf.data pipeline;
each run saved when it ends, as in the app), while a reader thread does what an open Train page costs the
server every second (``--page``): ``snapshot`` (default) reads ``engine.progress(run_id)`` (the run's
snapshot), the engine's part;
``draw`` also builds both live Plotly figures and serialises them to JSON; ``server`` then also does
what Streamlit does after every (fragment) run once Keras is imported: ``keras.backend.clear_session()``
(which calls ``gc.collect()``) and ``gc.collect(2)`` — Streamlit's defaults; ``server-no-clear`` does the
same without ``clear_session`` (Keras's session kept, as app.py does); ``draw`` alone is the server as
configured now (``runner.postScriptGC = false``: no collection after a run).
B: ``dcnn_core.design.build.build_model`` + the same compile, then ``model.fit(x, y, batch_size, shuffle=True)``
on the same uint8 arrays — in the same process (same TensorFlow thread settings), same seed.

Both first train one untimed epoch (graph tracing). Then warm epochs alternate, A B, B A, …: A is the
run continued for one more epoch through the door, ``engine.continue_run(run_id, 1)`` then ``engine.wait``
(the Train page's "Continue training"), B one more ``fit`` epoch of the plain model. Each epoch is timed
from ``on_epoch_begin`` to ``on_epoch_end`` (A by wrapping the run's own epoch hooks in
``dcnn_core.training.lifecycle``: the run's own bookkeeping counts, not its queueing, thread start or the
save after the epoch; B by a callback), in wall-clock seconds and in CPU seconds of the whole process
(``time.process_time``: all threads, the page reader's included). The figure is the median of the
per-pair ratios; the CPU-time ratio is the steadier one on a loaded machine, since it does not count
time spent waiting for a core.

    python bench/training_overhead.py [--repeats 10] [--images 6000] [--page snapshot|draw|server|server-no-clear|none]
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time

from _common import local_engine, print_header, summarise


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="A/B pairs of warm epochs (default 10)")
    parser.add_argument("--images", type=int, default=6000, help="training images, Shapes 28×28 grayscale (default 6000)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="Simple CNN", help="a preset name from dcnn_core.design.spec.PRESETS")
    parser.add_argument("--threads", type=int, default=1, help="DCNN_TF_THREADS for both (default 1, the app's default on 2 cores)")
    parser.add_argument(
        "--page",
        choices=("none", "snapshot", "draw", "server", "server-no-clear"),
        default="snapshot",
        help="what the simulated open Train page does each second while A trains: nothing, engine.progress(run_id) "
        "(default), + both live figures built and serialised, + Streamlit's post-run clean-up",
    )
    return parser.parse_args()


def load_data(images: int):
    """The Shapes images, and their data-set reference as the Data page makes it."""
    from dcnn_core.data import datasets, shapes

    per_class = max(2, round(images / len(shapes.SHAPE_NAMES) * 6 / 5))  # load_shapes keeps 5/6 of each class for training
    reference = {"key": "shapes", "options": {"count_per_class": per_class, "image_size": 28, "colour": False, "seed": 0}}
    return datasets.load_dataset(reference["key"], **reference["options"]), reference


def page_reader(engine, run_id: str, mode: str, stop: threading.Event, interval_s: float = 1.0) -> None:
    """What pages/train.py's fragment does each ``run_every`` second while the run is active."""
    import gc

    from dcnn_core.results import training_plots
    from dcnn_core.runtime import import_keras

    keras = import_keras()
    while not stop.wait(interval_s):
        progress = engine.progress(run_id)
        if mode != "snapshot" and (progress.history["loss"] or progress.batch_loss):
            figure = training_plots.training_curves(progress.history, progress.batch_steps, progress.batch_loss, progress.batch_accuracy)
            figure.to_json()
            if progress.history["learning_rate"]:
                training_plots.rate_and_speed(progress.history).to_json()
        if mode == "server":  # streamlit/runtime/scriptrunner/script_runner.py, after every run
            keras.backend.clear_session()
        if mode.startswith("server"):
            gc.collect(2)


class EpochClock:
    """Wall and CPU seconds between an epoch's begin and end hooks."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def begin(self) -> None:
        self._started = (time.perf_counter(), time.process_time())

    def end(self) -> None:
        self.wall.append(time.perf_counter() - self._started[0])
        self.cpu.append(time.process_time() - self._started[1])


class JobRunner:
    """A: one run through the engine door, trained once untimed, then continued one epoch at a time."""

    def __init__(self, spec, dataset, reference: dict, config, page: str):
        from dcnn_core.training import lifecycle
        from dcnn_core.training.description import RunDescription

        self.engine = local_engine(lambda _reference: dataset, slots=1, prefix="bench-overhead-runs-")
        self.page = page
        self.images = len(dataset.x_train)
        self.clock = EpochClock()
        begin, end = lifecycle._Recorder.on_epoch_begin, lifecycle._Recorder.on_epoch

        def timed_begin(recorder):
            self.clock.begin()
            begin(recorder)

        def timed_end(recorder, *args):
            stop = end(recorder, *args)  # the run's own bookkeeping counts as its cost
            self.clock.end()
            return stop

        lifecycle._Recorder.on_epoch_begin, lifecycle._Recorder.on_epoch = timed_begin, timed_end  # the only run of this process
        self.run_id = self.engine.submit(RunDescription(spec, config, reference, owner="bench"))
        self._follow()  # the untimed first epoch

    def _follow(self) -> None:
        """While the run trains, the simulated page reads it; then check that it finished."""
        from dcnn_core.training.job import FINISHED

        stop = threading.Event()
        reader = None
        if self.page != "none":
            reader = threading.Thread(target=page_reader, args=(self.engine, self.run_id, self.page, stop), daemon=True)
            reader.start()
        self.engine.wait(self.run_id)
        stop.set()
        if reader is not None:
            reader.join()
        progress = self.engine.progress(self.run_id)
        if progress.status != FINISHED:
            raise RuntimeError(f"The run ended {progress.status}: {progress.message}\n{progress.details}")

    def epoch(self) -> tuple[float, float]:
        """Images per wall second and per CPU second of one more epoch."""
        self.engine.continue_run(self.run_id, 1)
        self._follow()
        return self.images / self.clock.wall[-1], self.images / self.clock.cpu[-1]

    def close(self) -> None:
        shutil.rmtree(self.engine.store.root, ignore_errors=True)


class PlainRunner:
    """B: the same model built and compiled by hand, trained with model.fit on the numpy arrays."""

    def __init__(self, spec, dataset, config):
        from dcnn_core.design.build import build_model
        from dcnn_core.runtime import import_keras

        keras = import_keras()
        keras.utils.set_random_seed(config.seed)
        self.model = build_model(spec, dataset.input_shape, dataset.num_classes)
        self.model.compile(optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
                           loss="sparse_categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
        self.dataset, self.config = dataset, config
        self.clock = clock = EpochClock()

        class EpochTimer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                clock.begin()

            def on_epoch_end(self, epoch, logs=None):
                clock.end()

        self.timer = EpochTimer()
        self.epoch()  # the untimed first epoch

    def epoch(self) -> tuple[float, float]:
        self.model.fit(self.dataset.x_train, self.dataset.y_train, batch_size=self.config.batch_size, epochs=1, shuffle=True,
                       callbacks=[self.timer], verbose=0)  # fmt: skip
        images = len(self.dataset.x_train)
        return images / self.clock.wall[-1], images / self.clock.cpu[-1]


def main() -> None:
    args = parse_args()
    os.environ["DCNN_TF_THREADS"] = str(args.threads)  # read once by dcnn_core.runtime.import_keras
    print_header("Training throughput: dashboard job vs plain model.fit")
    from dcnn_core.design import spec as model_spec
    from dcnn_core.runtime import import_keras
    from dcnn_core.training.job import TrainConfig

    import_keras()
    import plotly.graph_objects  # noqa: F401  (loaded in the server too)
    import tensorflow as tf

    dataset, reference = load_data(args.images)
    spec = model_spec.preset(args.model)
    config = TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=args.batch_size, epochs=1, validation_split=0.0)
    print(f"Data: {dataset.title}, {len(dataset.x_train)} training images {dataset.input_shape} uint8; model: {spec.name}; "
          f"batch {args.batch_size}; 1 untimed + {args.repeats} timed epochs each; adam 1e-3; seed {config.seed}; "
          f"TF intra/inter-op threads {tf.config.threading.get_intra_op_parallelism_threads()}/"
          f"{tf.config.threading.get_inter_op_parallelism_threads()}; page simulation: {args.page}", flush=True)  # fmt: skip
    job_runner, plain_runner = JobRunner(spec, dataset, reference, config, args.page), PlainRunner(spec, dataset, config)
    pairs = []
    for repeat in range(args.repeats):
        order = ("job", "plain") if repeat % 2 == 0 else ("plain", "job")
        result = {which: (job_runner.epoch() if which == "job" else plain_runner.epoch()) for which in order}
        pairs.append((result["job"], result["plain"]))
        (job_wall, job_cpu), (plain_wall, plain_cpu) = result["job"], result["plain"]
        print(f"  pair {repeat + 1}/{args.repeats} ({' then '.join(order)}): job {job_wall:.0f} img/s ({job_cpu:.0f} per CPU-s), "
              f"plain fit {plain_wall:.0f} img/s ({plain_cpu:.0f} per CPU-s) → ratio {job_wall / plain_wall:.3f} "
              f"(CPU {job_cpu / plain_cpu:.3f})", flush=True)  # fmt: skip
    job_runner.close()
    wall = summarise([job[0] / plain[0] for job, plain in pairs])
    cpu = summarise([job[1] / plain[1] for job, plain in pairs])
    print()
    print(f"Job throughput:        {summarise([job[0] for job, _ in pairs]).format('.0f', ' img/s')}")
    print(f"Plain fit throughput:  {summarise([plain[0] for _, plain in pairs]).format('.0f', ' img/s')}")
    verdict = "met" if wall.median >= 0.97 else "NOT met"
    print(f"RATIO job / plain fit, images per wall second: {wall.format('.3f')}  — target ≥ 0.97: {verdict}")
    print(f"RATIO job / plain fit, images per CPU second:  {cpu.format('.3f')}")


if __name__ == "__main__":
    main()
