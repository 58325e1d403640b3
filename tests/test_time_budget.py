"""Training to a time budget ("best in N minutes"): the plan, the rate, the real run, the page, the script."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import pytest

from dcnn_core.design import codegen, recipes, spec
from dcnn_core.training import budget, lifecycle
from dcnn_core.training import job as training
from dcnn_core.training.budget import BudgetPlan
from dcnn_core.training.progress import Progress, ProgressLog, Status
from ui import training_view


def _plan(budget_s=60.0, **changes) -> BudgetPlan:
    shape = dict(batches_per_epoch=100, batch_size=32, validation_images=320, test_images=1000, most_epochs=200)
    return BudgetPlan(budget_s, **(shape | changes))


def test_the_first_timed_batches_plan_the_epochs_that_fit_and_the_rate_reaches_zero_at_the_last_batch():
    plan = _plan()
    assert not plan.on_batches(4, 2.0)  # the first report carries the tracing: not timed
    assert not plan.on_batches(8, 2.1)  # too few batches yet
    assert plan.on_batches(44, 3.0)  # 40 batches in 1 s
    epoch_s = plan.epoch_s_estimate()
    assert epoch_s == pytest.approx(1 / 40 * 100 * (1 + 320 / 3 / 3200))
    # What is left after the epoch in progress, less the test evaluation, holds the planned epochs and not one more.
    left = 60 - 3.0 - plan.reserve_s() - 0.56 * epoch_s
    assert (plan.epochs - 1) * epoch_s <= left < plan.epochs * epoch_s
    rates = [plan.rate(1e-3, step) for step in range(plan.epochs * 100 + 1)]
    assert rates[0] == pytest.approx(1e-3 / 50) and rates[49] == pytest.approx(1e-3)  # warm-up over half an epoch
    assert all(a >= b for a, b in zip(rates[50:], rates[51:], strict=False))  # then only down
    assert rates[-1] == pytest.approx(0.0, abs=1e-12) and rates[len(rates) // 2] == pytest.approx(5e-4, rel=0.05)


def test_the_plan_follows_the_measured_pace_and_the_budget_ends_it():
    plan = _plan()
    plan.on_batches(4, 2.0)
    plan.on_batches(44, 3.0)
    first = plan.epochs
    assert not plan.on_epoch(1, 10.0, 12.0)  # the first epoch traced validation too: its batches' pace plans what is left
    assert plan.epochs == 1 + math.floor((60 - 12.0 - plan.reserve_s()) / plan.epoch_s_estimate()) < first
    assert not plan.on_epoch(2, 4.0, 16.0)  # from now on the first epoch is left out
    assert plan.epochs == 2 + math.floor((60 - 16.0 - plan.reserve_s()) / 4.0)
    assert not plan.over(50.0) and plan.over(60.0 - plan.reserve_s())
    assert plan.left_s(45.0) == 15.0 and _plan(None).left_s(45.0) is None
    late = _plan()
    late.on_epoch(1, 50.0, 55.0)  # one epoch took nearly all of it: no second one is planned
    assert late.on_epoch(1, 50.0, 55.0) and late.epochs == 1
    assert budget.typical_epoch_s([9.0, 4.0, 30.0, 4.5]) == 4.5  # one slow epoch on a busy machine does not halve the plan


def test_a_continued_session_trains_its_extra_epochs_from_a_tenth_of_the_peak_down_to_zero():
    config = recipes.budget_config("LeNet-5", "digits", 60)
    plan = budget.session_plan(config, epochs_done=10, end=15, batches_per_epoch=100, validation_images=0, test_images=0,
                               room_limit_s=None)  # fmt: skip
    assert plan.epochs == 15 and plan.budget_s is None and not plan.over(1e9)
    assert plan.rate(3e-3, 1000) == pytest.approx(3e-4) and plan.rate(3e-3, 1500) == pytest.approx(0.0, abs=1e-12)
    first = budget.session_plan(config, epochs_done=0, end=20, batches_per_epoch=100, validation_images=0, test_images=0,
                                room_limit_s=45.0)  # fmt: skip
    assert first.budget_s == 45.0 and first.most_epochs == 20  # the room's time and epoch limits cap the budget
    assert budget.effective_budget_s(300.0, None) == 300.0 and budget.effective_budget_s(None, 60.0) == 60.0
    assert budget.session_plan(recipes.recipe_for("LeNet-5").config, epochs_done=0, end=20, batches_per_epoch=1, validation_images=0,
                               test_images=0, room_limit_s=None) is None  # fmt: skip


@pytest.mark.parametrize(("changes", "message"), [({"budget_s": 5.0}, "time budget"), ({"precision": "float16"}, "precision")])
def test_bad_budget_or_precision_is_refused_in_a_sentence(changes, message):
    import dataclasses

    with pytest.raises(ValueError, match=message):
        dataclasses.replace(training.TrainConfig(), **changes).validate()


def test_budget_recipes_flip_clothes_and_shapes_but_never_digits_and_validate_for_every_preset():
    for name in spec.PRESETS:
        for key in ("fashion_mnist", "mnist", "digits", "shapes", "cifar10", "custom"):
            config = recipes.budget_config(name, key, 120)
            config.validate()
            assert config.budget_s == 120 and config.schedule == "cosine" and not config.early_stopping
            if name != "Article baseline":  # the article's own settings stay unaugmented
                assert config.augmentation.flip == (key in ("fashion_mnist", "shapes", "cifar10")) and config.augmentation.shift > 0
    assert recipes.budget_config("LeNet-5", "mnist", 60).learning_rate == recipes.recipe_for("LeNet-5").config.learning_rate


def test_bfloat16_only_where_the_cpu_has_it_and_the_design_measured_faster():
    assert recipes.precision_for("auto", "Simple CNN", cpu_has_bfloat16=True) == "mixed_bfloat16"
    assert recipes.precision_for("auto", "Simple CNN (edited)", cpu_has_bfloat16=True) == "mixed_bfloat16"
    assert recipes.precision_for("auto", "MobileNet-style mini", cpu_has_bfloat16=True) == "float32"  # measured slower
    assert recipes.precision_for("bfloat16", "MobileNet-style mini", cpu_has_bfloat16=True) == "mixed_bfloat16"  # asked outright
    assert recipes.precision_for("auto", "Article baseline", cpu_has_bfloat16=True) == "float32"  # never measured
    assert recipes.precision_for("auto", "Simple CNN", cpu_has_bfloat16=False) == "float32"  # emulated: only slower
    assert recipes.precision_for("float32", "Simple CNN", cpu_has_bfloat16=True) == "float32"


def test_a_bfloat16_build_keeps_a_float32_output_and_leaves_the_threads_policy_as_it_was(tiny_shapes):
    from dcnn_core.design.build import build_model
    from dcnn_core.runtime import dtype_policy, import_keras

    keras = import_keras()
    with dtype_policy("mixed_bfloat16"):
        model = build_model(spec.preset("Simple CNN"), tiny_shapes.input_shape, tiny_shapes.num_classes, float32_output=True)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert model.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert model.get_layer("predictions").compute_dtype == "float32"
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    loss = model.train_on_batch(tiny_shapes.x_train[:16], tiny_shapes.y_train[:16])
    assert math.isfinite(float(loss)) and model.predict(tiny_shapes.x_test[:2], verbose=0).dtype == "float32"
    plain = lifecycle.build_and_compile(spec.preset("LeNet-5"), tiny_shapes, training.TrainConfig(precision="float32"))
    assert plain.get_layer("predictions").compute_dtype == "float32" and plain.layers[-2].compute_dtype == "float32"


def test_a_budgeted_run_counts_its_epochs_ends_at_its_budget_and_decays_to_zero(tiny_shapes):
    from dcnn_core.runtime import import_keras

    import_keras()
    config = recipes.budget_config("LeNet-5", "shapes", 12)
    job = training.TrainingJob(spec.preset("LeNet-5"), tiny_shapes, config)
    started = time.monotonic()
    job.run()
    wall = time.monotonic() - started
    progress = job.snapshot()
    assert progress.status == Status.FINISHED, progress.message
    assert "as many as fit in its 12 s budget" in progress.message
    assert progress.budget_s == 12 and progress.budget_planned and 3 <= progress.epoch == progress.epochs < budget.MOST_EPOCHS
    assert wall < 12 + 4  # the budget includes the build; the test evaluation was reserved; a busy machine adds a little
    rates = progress.history["learning_rate"]
    assert rates[-1] < 0.05 * config.learning_rate and max(rates) > 0.5 * config.learning_rate
    assert progress.test_accuracy is not None


def test_the_progress_line_counts_down_the_budget_and_the_mirror_carries_it():
    log = ProgressLog(target_epochs=200)
    log.begin_session(50)
    log.record_budget(120.0, 30.0, None)
    line = lambda: training_view.progress_text(log.progress("r", Status.RUNNING, "", "", 31.0, None, None, None))  # noqa: E731
    assert line() == "Epoch 1 (timing the first batches) · batch 0/50 · 1:30 of 2:00 left"
    log.record_budget(120.0, 75.0, 14)
    assert line() == "Epoch 1/14 · batch 0/50 · 45 s of 2:00 left"
    progress: Progress = log.progress("r", Status.RUNNING, "", "", 80.0, None, None, None)
    assert progress.fraction_done == pytest.approx(75 / 120)
    mirror = ProgressLog()
    mirror.apply(log.delta(None)[1])  # a Ray worker's run, mirrored in the web process
    copy = mirror.progress("r", Status.RUNNING, "", "", 80.0, None, None, None)
    assert (copy.budget_s, copy.budget_used_s, copy.budget_planned, copy.epochs) == (120.0, 75.0, True, 14)


def test_the_generated_script_carries_the_budget_plan_and_trains_to_it(tmp_path):
    config = recipes.budget_config("LeNet-5", "digits", 10)
    path = tmp_path / "budget.py"
    path.write_text(codegen.generate_script(recipes.nearest_fitting(spec.preset("LeNet-5"), (8, 8, 1), 10), (8, 8, 1), 10,
                                            "digits", config))  # fmt: skip
    text = path.read_text()
    assert "BUDGET_S = 10.0" in text and "TimeBudget(len(x_fit), len(x_validation))" in text
    assert "LearningRateScheduler" not in text  # the rate is set per batch by the plan
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=240,
                            env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test accuracy" in result.stdout and "time budget:" in result.stdout
    assert time.monotonic() - started < 10 + 60  # the budget, plus starting Python and TensorFlow on a shared machine


def _home(monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=30)
    at.run()
    assert not at.exception
    return at


def test_beat_the_article_offline_says_so_in_a_sentence_and_changes_nothing(monkeypatch):
    monkeypatch.setenv("DCNN_OFFLINE", "1")
    at = _home(monkeypatch)
    before = (at.session_state["dataset_choice"], at.session_state["model_spec"], at.session_state["train_config"])
    at.button(key="home_beat_article").click().run()
    assert not at.exception
    assert any("needs the real Fashion-MNIST; nothing was changed" in warning.value for warning in at.warning)
    assert (at.session_state["dataset_choice"], at.session_state["model_spec"], at.session_state["train_config"]) == before
    assert not at.session_state["job_ids"]


def test_beat_the_article_starts_the_best_preset_on_fashion_mnist_planned_to_five_minutes(monkeypatch, tiny_shapes):
    import dataclasses

    from dcnn_core.data import datasets
    from tests.helpers import app_engine
    from ui import challenge

    fashion = datasets.make_dataset("fashion_mnist", "Fashion-MNIST", "test stand-in", tiny_shapes.x_train, tiny_shapes.y_train,
                                    tiny_shapes.x_test, tiny_shapes.y_test, tiny_shapes.class_names, True)  # fmt: skip
    option = datasets.REGISTRY["fashion_mnist"]
    monkeypatch.setitem(datasets.REGISTRY, "fashion_mnist", dataclasses.replace(option, loader=lambda: fashion))  # the data, not the app
    from ui import resources

    def forget_loads():  # Streamlit's process-wide caches: the stand-in must not outlive this test, nor an earlier failure block it
        resources._load_dataset.clear()
        resources._failed_loads()["failures"].clear()

    forget_loads()
    at = _home(monkeypatch)
    at.button(key="home_beat_article").click().run()
    assert not at.exception and not at.warning
    runs = app_engine().runs(at.session_state["owner_id"])
    assert len(runs) == 1
    run = runs[0]
    try:
        assert run.dataset_ref["key"] == "fashion_mnist" and run.spec.name == challenge.CHALLENGE_PRESET
        planned = recipes.budget_config(challenge.CHALLENGE_PRESET, "fashion_mnist", 300.0)
        assert run.config == dataclasses.replace(planned, epochs=run.config.epochs)  # a room (other tests' sessions) caps the epochs
        assert run.config.augmentation.flip  # clothes may be mirrored
        assert at.session_state["train_config"] == planned and at.session_state["model_spec"].name == challenge.CHALLENGE_PRESET
    finally:
        app_engine().stop(run.run_id)
        app_engine().wait(run.run_id, timeout=60)
        forget_loads()


def test_a_preset_that_needs_more_epochs_than_fitted_says_so_when_it_ends():
    assert "Only 20 epochs fitted; VGG-style mini needs about 30" in recipes.budget_note("VGG-style mini (edited)", 20)
    assert "try the Simple CNN" in recipes.budget_note("VGG-style mini", 3)
    assert recipes.budget_note("VGG-style mini", 30) == "" and recipes.budget_note("Simple CNN", 1) == ""


def test_a_fashion_mnist_run_is_set_beside_the_articles_accuracy():
    assert training_view.against_the_article(0.9281) == (
        "The article's dense net reached 0.8763 on this test set: this run beats it by 5.2 points."
    )
    assert training_view.against_the_article(0.8663).endswith("this run is below it by 1.0 points.")
    assert training_view.against_the_article(0.8765).endswith("this run matches it.")
