"""Core behaviour a user relies on, asserted by what it produces (weights, losses, rates, batches).

Each test here fails if the feature it names silently stops working. They use only the public
surface of the core: ``TrainingJob``, ``JobRegistry``, ``Progress``, the loaders and settings.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from dcnn_core import settings
from dcnn_core.data import datasets
from dcnn_core.design import spec
from dcnn_core.results.evaluation import accuracy_and_loss, predict_probabilities
from dcnn_core.training import job as training
from dcnn_core.training import lifecycle
from dcnn_core.training.config import TrainConfig
from dcnn_core.training.registry import JobRegistry

LOSS_TOLERANCE = 1e-4  # Keras's float32 batch means vs. our own mean over the same images


def _train(dataset: datasets.Dataset, config: TrainConfig, preset: str = "Simple CNN") -> training.TrainingJob:
    job = training.TrainingJob(spec.preset(preset), dataset, config, owner="failable")
    job.run()
    return job


def _validation_loss(job: training.TrainingJob) -> float:
    """The loss of the job's final model on the validation images that training held out."""
    _, _, x_val, y_val = lifecycle.split_train_validation(job.dataset, job.config.validation_split, job.config.seed)
    assert len(x_val) > 0
    return accuracy_and_loss(predict_probabilities(job.model, x_val), y_val)[1]


# --- early stopping ----------------------------------------------------------------------------


def test_early_stopping_keeps_the_weights_of_the_best_epoch(tiny_shapes):
    # A large step makes the validation loss rise after a few epochs (seeded: the same every time).
    config = TrainConfig(epochs=30, batch_size=16, learning_rate=0.03, optimizer="sgd", early_stopping=True, patience=2, seed=2)
    job = _train(tiny_shapes, config)
    progress = job.snapshot()
    assert progress.status == training.FINISHED, progress.message
    assert progress.epoch < 30, "early stopping never triggered"
    val_losses = progress.history["val_loss"]
    best = val_losses[progress.best_epoch - 1]
    assert best == min(val_losses)
    assert val_losses[-1] - best > 20 * LOSS_TOLERANCE, "the last epoch is as good as the best: this run cannot tell them apart"
    # The model in hand scores the best epoch's validation loss, not the last epoch's.
    assert _validation_loss(job) == pytest.approx(best, abs=LOSS_TOLERANCE)


def test_without_early_stopping_the_last_epoch_is_kept(tiny_shapes):
    """The reference for the test above: the same measurement finds the last epoch when nothing is restored."""
    job = _train(tiny_shapes, TrainConfig(epochs=2, batch_size=16, seed=2))
    assert job.status == training.FINISHED
    assert _validation_loss(job) == pytest.approx(job.snapshot().history["val_loss"][-1], abs=LOSS_TOLERANCE)


# --- stop ---------------------------------------------------------------------------------------


class _FitProbe:
    """Wraps keras.Model.fit: records the weights a fit starts from, and asks the job to stop at a chosen batch."""

    def __init__(self, stop_at_epoch: int, stop_at_batch: int):
        self.stop_at = (stop_at_epoch, stop_at_batch)  # 0-based, as Keras counts
        self.job: training.TrainingJob | None = None
        self.initial_weights: list[np.ndarray] | None = None
        self.at_request = None  # the job's Progress when the stop was requested

    def install(self, monkeypatch) -> None:
        from dcnn_core.runtime import import_keras

        keras = import_keras()
        original_fit = keras.Model.fit
        probe = self

        class StopAt(keras.callbacks.Callback):
            epoch = 0

            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch

            def on_train_batch_end(self, batch, logs=None):
                if (self.epoch, batch) == probe.stop_at and probe.at_request is None:
                    probe.at_request = probe.job.snapshot()
                    probe.job.request_stop()

        def fit(model, *args, callbacks=None, **kwargs):
            if probe.initial_weights is None:
                probe.initial_weights = [np.array(w, copy=True) for w in model.get_weights()]
            return original_fit(model, *args, callbacks=[*(callbacks or []), StopAt()], **kwargs)

        monkeypatch.setattr(keras.Model, "fit", fit)


@pytest.fixture(scope="module")
def stopped_job(tiny_shapes):
    """A 20-epoch run on tiny Shapes (9 batches an epoch) asked to stop after batch 4 of epoch 2."""
    monkeypatch = pytest.MonkeyPatch()
    probe = _FitProbe(stop_at_epoch=1, stop_at_batch=3)
    try:
        probe.install(monkeypatch)
        probe.job = training.TrainingJob(spec.preset("Simple CNN"), tiny_shapes, TrainConfig(epochs=20, batch_size=16, seed=5))
        worker = threading.Thread(target=probe.job.run)
        worker.start()
        assert probe.job.wait(120), "training did not stop"
        worker.join(10)
    finally:
        monkeypatch.undo()
    return probe


def test_stop_ends_within_one_call_of_the_request(stopped_job):
    """Keras runs ``BATCHES_PER_CALL`` batches per call into TensorFlow: Stop takes effect at the next report."""
    requested, final = stopped_job.at_request, stopped_job.job.snapshot()
    assert requested is not None, "the probe never reached its batch"
    assert (requested.epoch, requested.batch) == (1, 4)  # 1 epoch done, 4 batches of the second
    assert final.status == training.STOPPED
    assert final.epoch == requested.epoch, "training went on into another epoch"
    assert requested.batch <= final.batch <= requested.batch + lifecycle.BATCHES_PER_CALL, (final.batch, requested.batch)
    assert len(final.history["loss"]) == 1  # no validation pass for the interrupted epoch
    assert f"epoch 2, batch {final.batch}" in final.message and "kept" in final.message


def test_stop_keeps_the_trained_weights_and_they_predict(stopped_job, tiny_shapes):
    job = stopped_job.job
    initial, kept = stopped_job.initial_weights, job.model.get_weights()
    assert len(initial) == len(kept)
    assert any(not np.allclose(a, b) for a, b in zip(initial, kept, strict=True)), "the weights are still the initial ones"
    probabilities = predict_probabilities(job.model, tiny_shapes.x_test)
    assert probabilities.shape == (len(tiny_shapes.x_test), tiny_shapes.num_classes)
    assert np.all(np.isfinite(probabilities)) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


# --- class weights ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def imbalanced_shapes(tiny_shapes) -> datasets.Dataset:
    """Tiny Shapes with every circle and only 3 images of each other class: 25 vs. 15."""
    keep = np.concatenate([np.flatnonzero(tiny_shapes.y_train == 0)] + [np.flatnonzero(tiny_shapes.y_train == c)[:3] for c in range(1, 6)])
    keep.sort()
    return datasets.make_dataset(
        "imbalanced", "Imbalanced shapes", "test", tiny_shapes.x_train[keep], tiny_shapes.y_train[keep],
        tiny_shapes.x_test, tiny_shapes.y_test, tiny_shapes.class_names, tiny_shapes.light_on_dark,
    )  # fmt: skip


def test_class_weights_change_the_loss_and_the_model(imbalanced_shapes):
    config = TrainConfig(epochs=2, batch_size=8, validation_split=0.0, seed=7)
    plain = _train(imbalanced_shapes, config)
    weighted = _train(imbalanced_shapes, dataclasses.replace(config, class_weights=True))
    again = _train(imbalanced_shapes, config)  # same seed, no weights: the reference for "no change"
    assert plain.status == weighted.status == again.status == training.FINISHED
    plain_loss, weighted_loss = plain.snapshot().history["loss"], weighted.snapshot().history["loss"]
    assert again.snapshot().history["loss"] == pytest.approx(plain_loss, rel=1e-4)
    assert weighted_loss[0] != pytest.approx(plain_loss[0], rel=1e-2), "class weights did not change the training loss"
    plain_p = predict_probabilities(plain.model, imbalanced_shapes.x_test)
    weighted_p = predict_probabilities(weighted.model, imbalanced_shapes.x_test)
    # Rare classes count more: the weighted model gives them more probability than the unweighted one.
    rare = slice(1, None)
    assert weighted_p[:, rare].sum(axis=1).mean() > plain_p[:, rare].sum(axis=1).mean()


# --- learning-rate schedule -----------------------------------------------------------------


def test_plateau_schedule_drops_the_rate_after_an_epoch_without_progress(tiny_shapes):
    config = TrainConfig(
        epochs=8, batch_size=16, learning_rate=0.03, optimizer="sgd", schedule="plateau", patience=1, step_factor=0.5, seed=2
    )
    progress = _train(tiny_shapes, config).snapshot()
    assert progress.status == training.FINISHED
    rates, val_losses = progress.history["learning_rate"], progress.history["val_loss"]
    assert len(rates) == 8 and rates[0] == pytest.approx(0.03)
    drops = [epoch for epoch in range(1, 8) if rates[epoch] < rates[epoch - 1] * 0.99]
    assert drops, f"the rate never dropped: {rates}"
    for epoch in range(1, 8):
        assert rates[epoch] / rates[epoch - 1] == pytest.approx(0.5 if epoch in drops else 1.0, rel=1e-5)
    first = drops[0]  # rate used in epoch `first` is lower: epoch `first - 1` (0-based) did not improve
    assert val_losses[first - 1] >= min(val_losses[: first - 1]) - 1e-4, f"dropped after an improving epoch: {val_losses}"


# --- the registry: idle reaper ------------------------------------------------------------------


def _wait(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_the_idle_reaper_stops_only_jobs_unseen_for_longer_than_the_limit(digits):
    registry = JobRegistry(max_concurrent=1, idle_stop_s=60)
    job = registry.submit(training.TrainingJob(spec.preset("Simple CNN"), digits, TrainConfig(epochs=50, batch_size=8), owner="idle"))
    try:
        assert _wait(lambda: job.snapshot().batch >= 1), job.snapshot().message
        registry.on_evict = lambda evicted: True  # would take any ended run: a running one must still stay
        seen = job.last_seen
        assert registry.stop_idle(now=seen + 59) == []
        assert registry.evict_idle(now=seen + 3600) == []  # a running job never leaves memory
        assert job.status == training.RUNNING
        assert registry.stop_idle(now=seen + 61) == [job]
        assert job.wait(30)
        progress = job.snapshot()
        assert progress.status == training.STOPPED
        assert "nobody had looked at it for 1 min" in progress.message and "kept" in progress.message
        assert job.model is not None and predict_probabilities(job.model, digits.x_test[:2]).shape == (2, 10)
    finally:
        job.request_stop()
        job.wait(30)


def test_the_idle_reaper_evicts_ended_runs_its_callback_accepts(tiny_shapes):
    registry = JobRegistry(max_concurrent=1, idle_stop_s=60)
    handed_over = []
    registry.on_evict = lambda job: handed_over.append(job) or True
    job = _train(tiny_shapes, TrainConfig(epochs=1, batch_size=32))
    registry.add_ended(job)
    job.touch()
    seen = job.last_seen
    assert registry.evict_idle(now=seen + 30) == [] and registry.get(job.job_id) is job
    assert registry.evict_idle(now=seen + 61) == [job]
    assert handed_over == [job] and registry.get(job.job_id) is None and registry.jobs() == []


# --- settings from the environment --------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [("3", 3), (" 5 ", 5), ("0", 1), ("-4", 1), ("many", None), ("", None)])
def test_max_concurrent_jobs_is_read_from_the_environment(monkeypatch, raw, expected):
    monkeypatch.delenv("DCNN_MAX_CONCURRENT_JOBS", raising=False)
    default = settings.load_settings().max_concurrent_jobs
    assert default >= 1
    monkeypatch.setenv("DCNN_MAX_CONCURRENT_JOBS", raw)
    assert settings.load_settings().max_concurrent_jobs == (default if expected is None else expected)


def test_page_times_are_logged_only_when_asked():
    assert settings.load_settings({}).log_page_times is False
    assert settings.load_settings({"DCNN_LOG_PAGE_TIMES": "1"}).log_page_times is True
    assert settings.load_settings({"DCNN_LOG_PAGE_TIMES": "yes please"}).log_page_times is False


def test_importing_keras_puts_its_objects_out_of_the_collectors_reach():
    """A full collection pauses every thread; with TensorFlow's objects frozen it no longer walks them."""
    import gc

    from dcnn_core.runtime import import_keras

    import_keras()
    assert gc.get_freeze_count() > 100_000


# --- data sets that download (their files already in Keras's cache, as a download leaves them) -----------------


def _cached_download(monkeypatch, tmp_path, name: str, image_shape: tuple[int, ...]):
    """``name``'s file in its own format (mnist.npz; CIFAR-10's archive of pickled batches) in Keras's cache under
    ``tmp_path``, with the catalogue expecting its sha256: what a finished download leaves. Returns the training images."""
    import io
    import pickle
    import tarfile

    from dcnn_core import downloads
    from dcnn_core.data import downloaded

    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, (12, *image_shape), dtype=np.uint8)
    test_images = rng.integers(0, 256, (4, *image_shape), dtype=np.uint8)
    train_labels, test_labels = (np.arange(12) % 10).astype(np.uint8), (np.arange(4) % 10).astype(np.uint8)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    source = downloaded.SOURCES[name][0]
    path = tmp_path / "datasets" / source.name
    path.parent.mkdir(parents=True)
    if name == "mnist":
        np.savez(path, x_train=train_images, y_train=train_labels, x_test=test_images, y_test=test_labels)
    else:  # CIFAR-10: five training batches and a test batch, channels first, labels as lists
        parts = [*zip(np.array_split(train_images, 5), np.array_split(train_labels, 5), strict=True), (test_images, test_labels)]
        with tarfile.open(path, "w:gz") as archive:
            for member, (images, labels) in zip(downloaded.CIFAR_MEMBERS, parts, strict=True):
                data = pickle.dumps({b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1), b"labels": labels.tolist()})
                entry = tarfile.TarInfo(member)
                entry.size = len(data)
                archive.addfile(entry, io.BytesIO(data))
    sha256 = downloads.hash_of(str(path), source.remote.file_hash)
    remote = dataclasses.replace(source.remote, file_hash=sha256)
    monkeypatch.setitem(downloaded.SOURCES, name, (dataclasses.replace(source, remote=remote),))
    return train_images


def test_mnist_loads_from_the_keras_download(monkeypatch, tmp_path):
    monkeypatch.delenv("DCNN_OFFLINE", raising=False)
    images = _cached_download(monkeypatch, tmp_path, "mnist", (28, 28))
    data = datasets.load_dataset("mnist")
    assert data.key == "mnist" and data.input_shape == (28, 28, 1) and data.light_on_dark
    assert data.class_names == tuple(str(d) for d in range(10))
    assert np.array_equal(data.x_train[..., 0], images) and data.y_train.tolist() == (np.arange(12) % 10).tolist()
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64 and len(data.x_test) == 4
    assert not data.x_train.flags.writeable


def test_cifar10_loads_from_the_keras_download(monkeypatch, tmp_path):
    monkeypatch.delenv("DCNN_OFFLINE", raising=False)
    images = _cached_download(monkeypatch, tmp_path, "cifar10", (32, 32, 3))
    data = datasets.load_dataset("cifar10")
    assert data.input_shape == (32, 32, 3) and not data.light_on_dark and data.class_names == datasets.CIFAR10_CLASSES
    assert np.array_equal(data.x_train, images)
    assert data.y_train.shape == (12,) and data.y_test.tolist() == [0, 1, 2, 3]  # (N, 1) labels flattened


@pytest.mark.parametrize("key, title", [("fashion_mnist", "Fashion-MNIST"), ("mnist", "MNIST"), ("cifar10", "CIFAR-10")])
def test_offline_on_purpose_refuses_downloads_at_once(monkeypatch, tmp_path, key, title):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("DCNN_OFFLINE", "1")
    with pytest.raises(datasets.DatasetUnavailable, match=f"^{title} could not be downloaded — this server seems to be offline"):
        datasets.load_dataset(key)
    assert list(tmp_path.iterdir()) == [], "a download was attempted although DCNN_OFFLINE=1"
