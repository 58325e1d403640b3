"""Train an exported experiment headless, on this machine's GPUs or across workers.

    python -m dcnn_core.headless.train experiment.json --out runs/ [--strategy auto|default|mirrored|multi_worker]
                              [--epochs N] [--mixed-precision] [--owner TOKEN]

The run folder has the same format as runs trained in the app (``dcnn_core.training.runs.RunStore``). The
batch size in the experiment is the GLOBAL batch, split across replicas. In a multi-worker cluster
(``TF_CONFIG``) every worker runs this same command; only the chief (task 0) writes the run folder.
Exit codes: 0 finished, 1 training failed, diverged or was stopped, 2 the experiment, its data set or
the options were refused (one line on stderr naming what is wrong).
See docs/headless-and-distributed.md.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import sys
import tempfile
import threading
import uuid
from dataclasses import replace
from pathlib import Path

from dcnn_core.data import datasets
from dcnn_core.design import plan
from dcnn_core.headless import distribute
from dcnn_core.headless.experiment import Experiment
from dcnn_core.training import job as training
from dcnn_core.training import runs
from dcnn_core.training.config import TrainConfig

OWNER_TOKEN = re.compile(r"^[0-9a-f]{32}$")
WEIGHTS_DUMP_ENV = "DCNN_WEIGHTS_DUMP"  # test hook: write the final weights to this .npz path
REFRESH_S = 0.5  # the terminal's progress bar is redrawn at most twice a second


class _Refused(Exception):
    """Something the user must fix before training can start (exit code 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dcnn_core.headless.train",
        description="Train a DCNN Studio experiment headless. The batch size is the global batch, split across replicas.",
    )
    parser.add_argument("experiment", type=Path, help="experiment JSON exported from the app's Train page")
    parser.add_argument("--out", type=Path, default=None, help="where the run folder goes (default: DCNN_RUNS_DIR or ./runs)")
    parser.add_argument("--strategy", choices=distribute.STRATEGIES, help="override the experiment's distribution strategy")
    parser.add_argument("--epochs", type=int, help="override the experiment's number of epochs")
    parser.add_argument("--mixed-precision", action="store_true", help="float16 compute on GPUs (ignored with a note on CPU)")
    parser.add_argument("--owner", help="owner token of the run (32 hex characters): open the app with ?user=TOKEN to see it")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # argparse has printed its usage message
        return stop.code if isinstance(stop.code, int) else 2
    try:
        experiment = _read_experiment(args)
        owner = _owner(args.owner)
        cluster = distribute.cluster_from_env()
        dataset = _load_dataset(experiment)
        _check_design(experiment, dataset)
    except _Refused as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return _train(experiment, dataset, owner, args.owner is None, cluster, args.out or runs.default_runs_dir())


def _read_experiment(args) -> Experiment:
    try:
        experiment = Experiment.from_json(args.experiment.read_bytes())
    except OSError as error:
        raise _Refused(f"cannot read {args.experiment}: {error.strerror or error}") from None
    except ValueError as error:
        raise _Refused(f"{args.experiment}: {error}") from None
    distribution = experiment.distribution
    if args.strategy:
        distribution = replace(distribution, strategy=args.strategy)
    if args.mixed_precision:
        distribution = replace(distribution, mixed_precision=True)
    config = experiment.config
    if args.epochs is not None:
        try:
            config = TrainConfig.from_dict({**config.to_dict(), "epochs": args.epochs})
        except ValueError as error:
            raise _Refused(f"--epochs: {error}") from None
    return replace(experiment, config=config, distribution=distribution)


def _owner(token: str | None) -> str:
    if token is None:
        return uuid.uuid4().hex  # the same kind of token the app gives each browser
    if not OWNER_TOKEN.match(token):
        raise _Refused("--owner: must be 32 lower-case hex characters, like the ?user=… value in the app's address.")
    return token


def _load_dataset(experiment: Experiment) -> datasets.Dataset:
    choice = experiment.dataset
    try:
        return datasets.load_dataset(choice.key, **choice.options)
    except datasets.DatasetUnavailable as error:
        raise _Refused(f"dataset.key: {error}") from None
    except (ValueError, TypeError) as error:
        raise _Refused(f"dataset.options: {error}") from None


def _check_design(experiment: Experiment, dataset: datasets.Dataset) -> None:
    analysis = plan.analyse(experiment.spec, dataset.input_shape, dataset.num_classes)
    if not analysis.ok:
        raise _Refused(f"spec: {analysis.error}")


def _train(experiment: Experiment, dataset, owner: str, new_owner: bool, cluster: distribute.Cluster, out: Path) -> int:
    say = _Printer("" if cluster.workers == 1 else f"[{cluster.task_type} {cluster.task_index}] ")
    try:
        strategy, description = distribute.choose_strategy(experiment.distribution.strategy)
    except ValueError as error:  # a malformed TF_CONFIG
        print(f"error: {error}", file=sys.stderr)
        return 2
    precision = distribute.set_mixed_precision(experiment.distribution.mixed_precision)
    config = experiment.config
    reference = {"key": experiment.dataset.key, "options": dict(experiment.dataset.options), "title": dataset.title}
    run = training.RunDescription(experiment.spec, config, reference, owner=owner, strategy=description)
    job = training.TrainingJob(run, dataset, distribution=strategy)
    images = f"{len(dataset.x_train):,} training images"
    say(f"Training {experiment.spec.name} on {dataset.title}: {images}, {config.epochs} epochs, seed {config.seed}")
    say(f"Strategy: {description}; {distribute.batch_semantics(config.batch_size, strategy.num_replicas_in_sync)}; {precision}")
    with _Progress(job, say), _stop_on_ctrl_c(job):
        job.run()  # on this thread: Keras's dtype policy and the strategy belong to it
    _dump_weights(job)
    folder = _save(job, out, cluster.is_chief)
    return _report(job, say, folder, owner, new_owner, cluster)


def _save(job: training.TrainingJob, out: Path, chief: bool) -> Path | None:
    """The chief writes the run folder; other workers take the same steps into a folder that is then removed."""
    if chief:
        return runs.RunStore(out).save(job)
    with tempfile.TemporaryDirectory(prefix="dcnn-worker-run-") as scratch:
        runs.RunStore(scratch).save(job)
    return None


def _report(job, say, folder: Path | None, owner: str, new_owner: bool, cluster: distribute.Cluster) -> int:
    progress = job.snapshot()
    say(progress.message)
    if progress.status == training.FAILED and progress.details:
        print(progress.details, file=sys.stderr)
    if progress.test_accuracy is not None:
        say(f"Test accuracy: {progress.test_accuracy:.4f} (loss {progress.test_loss:.4f}) on {len(job.dataset.x_test):,} test images")
    if folder is None:
        say(f"Worker {cluster.task_index} of {cluster.workers} done; the chief writes the run folder.")
    else:
        say(f"Run folder: {folder.resolve()}")
        say(f"Owner token: {owner}{' (new)' if new_owner else ''}")
        say("To see this run in the app: copy the run folder into the app's runs directory (DCNN_RUNS_DIR, default ./runs),")
        say(f"restart the app and open it with ?user={owner}")
    return 0 if progress.status == training.FINISHED else 1


def _dump_weights(job: training.TrainingJob) -> None:
    path = os.environ.get(WEIGHTS_DUMP_ENV)
    if path and job.model is not None:
        import numpy as np

        np.savez(path, *job.model.get_weights())


@contextlib.contextmanager
def _stop_on_ctrl_c(job: training.TrainingJob):
    """The first Ctrl-C stops after the current batch (the run is kept and saved); a second one aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(_signal, _frame):
        signal.signal(signal.SIGINT, previous)
        job.request_stop("Stopped by Ctrl-C")

    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Printer:
    """Prints lines, prefixed by the worker in a cluster, clearing a progress bar first."""

    def __init__(self, prefix: str, stream=None):
        self.prefix = prefix
        self.stream = stream or sys.stdout
        self.bar_shown = False
        self.lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self.lock:
            self._clear()
            print(f"{self.prefix}{line}", file=self.stream, flush=True)

    def bar(self, text: str) -> None:
        with self.lock:
            self.stream.write(f"\r{self.prefix}{text}\033[K")
            self.stream.flush()
            self.bar_shown = True

    def _clear(self) -> None:
        if self.bar_shown:
            self.stream.write("\r\033[K")
            self.bar_shown = False


class _Progress:
    """A thread that reads the job's snapshots: a line per epoch, a bar per batch on a terminal."""

    def __init__(self, job: training.TrainingJob, say: _Printer):
        self.job, self.say = job, say
        self.tty = say.stream.isatty()
        self.printed = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.done.set()
        self.thread.join()
        self._epoch_lines(self.job.snapshot())

    def _loop(self) -> None:
        while not self.done.wait(REFRESH_S):
            progress = self.job.snapshot()
            self._epoch_lines(progress)
            if self.tty and progress.status == training.RUNNING and progress.batches_per_epoch:
                self.say.bar(_bar(progress))

    def _epoch_lines(self, progress: training.Progress) -> None:
        history = progress.history
        while self.printed < len(history["loss"]):
            index = self.printed
            self.printed += 1
            parts = [f"epoch {index + 1}/{progress.epochs}"]
            for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                value = history[key][index]
                if math.isfinite(value):
                    parts.append(f"{key} {value:.4f}")
            parts.append(f"{history['images_per_s'][index]:,.0f} images/s")
            self.say("  ".join(parts))


def _bar(progress: training.Progress, width: int = 30) -> str:
    filled = int(width * progress.batch / max(1, progress.batches_per_epoch))
    eta = f"  {_duration(progress.eta_s)} left" if progress.eta_s is not None else ""
    return (
        f"epoch {progress.epoch + 1}/{progress.epochs} [{'#' * filled}{'.' * (width - filled)}] "
        f"{progress.batch}/{progress.batches_per_epoch} batches{eta}"
    )


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


if __name__ == "__main__":
    sys.exit(main())
