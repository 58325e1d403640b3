"""The training job: runs, reports metrics, stops on request, reports divergence, queues."""

import math
import threading
import time

import numpy as np
import pytest

from dcnn_core.design import spec
from dcnn_core.results.evaluation import predict_probabilities
from dcnn_core.training import failures, lifecycle
from dcnn_core.training import job as training
from dcnn_core.training.registry import JobRegistry


def _wait_for(predicate, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_finished_job_reports_metrics_and_a_working_model(trained_job, tiny_shapes):
    progress = trained_job.snapshot()
    assert progress.status == training.FINISHED
    assert progress.epoch == 2 and progress.fraction_done == 1.0
    assert len(progress.history["loss"]) == 2 and len(progress.history["val_accuracy"]) == 2
    assert all(math.isfinite(v) for v in progress.history["loss"])
    assert len(progress.batch_loss) == len(progress.batch_steps) > 0
    probabilities = predict_probabilities(trained_job.model, tiny_shapes.x_test[:5])
    assert probabilities.shape == (5, 6)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_article_baseline_trains_through_the_job(tiny_shapes):
    job = training.TrainingJob(spec.preset("Article baseline"), tiny_shapes, training.TrainConfig(epochs=1, batch_size=16))
    job.run()
    assert job.status == training.FINISHED
    assert job.model.count_params() == 16 * 16 * 256 + 256 + 256 * 6 + 6


def test_stop_ends_within_a_batch_and_keeps_the_weights(digits):
    job = training.TrainingJob(spec.preset("Simple CNN"), digits, training.TrainConfig(epochs=50, batch_size=8))
    thread = threading.Thread(target=job.run)
    thread.start()
    assert _wait_for(lambda: job.snapshot().batch >= 3), job.snapshot().message
    job.request_stop()
    assert job.wait(timeout=10), "training did not stop"
    progress = job.snapshot()
    assert progress.status == training.STOPPED
    assert "kept" in progress.message
    assert progress.epoch < 50
    # The model trained so far is usable.
    assert predict_probabilities(job.model, digits.x_test[:3]).shape == (3, 10)


def test_a_real_nan_loss_stops_with_a_clear_message(tiny_shapes, monkeypatch):
    """A NaN reported by Keras for a batch ends the run as diverged, with the batch named.

    Keras reports every ``BATCHES_PER_CALL`` batches, by the last one: the 4th batch is index 3.
    """
    job = training.TrainingJob(spec.preset("Simple CNN"), tiny_shapes, training.TrainConfig(epochs=2, batch_size=16))
    original = lifecycle._Recorder.on_batch
    poisoned = lambda self, batch, logs: original(self, batch, dict(logs, loss=float("nan")) if batch == 3 else logs)
    monkeypatch.setattr(lifecycle._Recorder, "on_batch", poisoned)
    job.run()
    progress = job.snapshot()
    assert progress.status == training.DIVERGED
    assert progress.message.startswith("Training stopped at epoch 1, batch 4: the loss became nan.")


def test_nan_loss_stops_with_a_clear_message(digits):
    design = spec.preset("Simple CNN")
    design.rescale = False  # raw 0–255 pixels with a huge step: the loss overflows
    job = training.TrainingJob(design, digits, training.TrainConfig(epochs=3, optimizer="sgd", learning_rate=100.0))
    job.run()
    progress = job.snapshot()
    assert progress.status == training.DIVERGED
    assert "the loss became nan" in progress.message or "the loss exploded to" in progress.message
    assert "learning rate" in progress.message


def test_an_exception_in_training_fails_only_that_job_with_a_sentence_and_the_details_in_the_log(tiny_shapes, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise OSError("[Errno 28] No space left on device: '/srv/organiser/runs/abc/model.keras'")

    monkeypatch.setattr(lifecycle, "build_and_compile", broken)
    job = training.TrainingJob(spec.preset("Simple CNN"), tiny_shapes, training.TrainConfig(epochs=1))
    job.run()
    progress = job.snapshot()
    assert progress.status == training.FAILED
    assert progress.message == failures.FILE_PROBLEM  # one sentence for the attendee: no path, no error type
    assert "/srv/organiser" not in progress.message and "OSError" not in progress.message
    assert "Traceback" in progress.details  # kept for the headless client
    assert "/srv/organiser/runs" in caplog.text and job.job_id in caplog.text  # the organiser's side


def test_a_failure_message_says_what_kind_of_problem_it_was():
    assert failures.user_message(MemoryError()) == failures.OUT_OF_MEMORY
    assert failures.user_message(ValueError("Negative dimension size caused by subtracting 3 from 2")) == failures.DESIGN_PROBLEM
    assert failures.user_message(RuntimeError("anything at all")) == failures.UNEXPECTED


def test_a_short_run_started_second_finishes_while_a_long_one_keeps_training(digits):
    """Fair share: one compute slot, yet the second attendee's short run does not wait for the first to end."""
    registry = JobRegistry(max_concurrent=1, slice_s=0.2)
    first = registry.submit(
        training.TrainingJob(spec.preset("Simple CNN"), digits, training.TrainConfig(epochs=50, batch_size=8), owner="a")
    )
    assert _wait_for(lambda: first.snapshot().batch_loss)
    second = registry.submit(training.TrainingJob(spec.preset("Article baseline"), digits, training.TrainConfig(epochs=1), owner="b"))
    assert second.wait(120)
    assert second.status == training.FINISHED
    assert first.status == training.RUNNING  # still training: both moved
    assert [job.owner for job in registry.jobs(owner="b")] == ["b"]
    first.request_stop()
    assert first.wait(10)


def test_a_queued_job_can_be_cancelled(digits):
    registry = JobRegistry(max_concurrent=1, slice_s=60)  # the first keeps its turn: the second waits for its first
    first = registry.submit(training.TrainingJob(spec.preset("Simple CNN"), digits, training.TrainConfig(epochs=50, batch_size=8)))
    second = registry.submit(training.TrainingJob(spec.preset("Simple CNN"), digits, training.TrainConfig(epochs=5)))
    assert _wait_for(lambda: first.status == training.RUNNING)
    second.request_stop()
    assert second.wait(5)
    assert second.status == training.STOPPED and "before it started" in second.snapshot().message
    first.request_stop()
    assert first.wait(10)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"optimizer": "adagrad"}, "Optimizer must be one of"),
        ({"batch_size": 0}, "batch size"),
        ({"epochs": 0}, "Epochs"),
        ({"validation_split": 0.95}, "validation split"),
    ],
)
def test_bad_training_settings_are_refused(tiny_shapes, changes, message):
    with pytest.raises(ValueError, match=message):
        training.TrainingJob(spec.preset("Simple CNN"), tiny_shapes, training.TrainConfig(**changes))


def test_on_a_shared_server_an_ended_run_keeps_its_model_but_not_its_training_machinery(trained_job, tiny_shapes):
    """Traced step functions and the validation iterator are dropped at the end of a room's run; prediction still works.

    A lone user's run (no room limits) keeps them, so Continue does not trace again.
    """
    assert trained_job.model.train_function is not None
    description = training.RunDescription(spec.preset("Simple CNN"), training.TrainConfig(epochs=1, batch_size=16),
                                          {"key": "shapes", "options": {}, "title": "t"},
                                          limits=training.RunLimits(images_per_epoch=64))  # fmt: skip
    job = training.TrainingJob(description, tiny_shapes)
    job.run()
    model = job.model
    assert job.status == training.FINISHED
    assert model.train_function is None and getattr(model, "_eval_epoch_iterator", None) is None
    assert predict_probabilities(model, tiny_shapes.x_test[:2]).shape == (2, tiny_shapes.num_classes)
