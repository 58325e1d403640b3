"""Training recipes: every preset has one, it validates, the Train page applies it, and with them deeper nets win."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dcnn_core.data import datasets
from dcnn_core.design import plan, recipes, spec
from dcnn_core.training import budget
from dcnn_core.training import job as training
from tests.helpers import goto
from ui import training_view

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def test_every_preset_has_a_recipe_that_validates_and_fits_the_train_page():
    assert set(recipes.RECIPES) == set(spec.PRESETS)
    for name in spec.PRESETS:
        recipe = recipes.recipe_for(name)
        recipe.config.validate()
        assert recipe.why and "\n" not in recipe.why
        config = recipe.config
        assert config.learning_rate in training_view.LEARNING_RATES  # the Train page's slider can show it
        assert config.batch_size in (8, 16, 32, 64, 128, 256) and 1 <= config.epochs <= 50 and config.patience <= 10
    assert recipes.recipe_for("LeNet-5 (edited)") == recipes.recipe_for("LeNet-5")
    with pytest.raises(ValueError, match="No recipe"):
        recipes.recipe_for("My own net")


def test_nearest_fitting_design_for_lenet_on_8x8_digits():
    lenet = spec.preset("LeNet-5")
    assert not plan.analyse(lenet, (8, 8, 1), 10).ok
    fitted = recipes.nearest_fitting(lenet, (8, 8, 1), 10)
    assert fitted is not None and plan.analyse(fitted, (8, 8, 1), 10).ok
    assert [b.filters for b in fitted.blocks] == [6, 16] and fitted.head == lenet.head  # the same layers, only padding changed
    assert "'same' padding" in recipes.describe_change(lenet, fitted)
    assert recipes.nearest_fitting(spec.preset("Simple CNN"), (28, 28, 1), 10) is None  # fits already: nothing offered


def _offline_app(monkeypatch) -> AppTest:
    monkeypatch.setenv("DCNN_OFFLINE", "1")  # the default data set is refused at once: Shapes stands in
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert not at.exception
    return at


def test_use_its_recipe_sets_the_train_page_controls(monkeypatch):
    at = _offline_app(monkeypatch)
    goto(at, "model")
    at.selectbox(key="model_preset").set_value("LeNet-5").run()
    goto(at, "train")
    at.number_input(key="train_seed").set_value(7).run()
    assert at.selectbox(key="train_optimizer").value == "adam"  # the defaults, before the click
    recipe = recipes.recipe_for("LeNet-5").config
    assert any(recipes.recipe_for("LeNet-5").why in caption.value for caption in at.caption)  # the why, next to the button
    at.button(key="train_use_recipe").click().run()
    assert not at.exception
    assert at.selectbox(key="train_optimizer").value == recipe.optimizer
    assert at.select_slider(key="train_learning_rate").value == recipe.learning_rate
    assert at.select_slider(key="train_batch_size").value == recipe.batch_size
    assert at.slider(key="train_epochs").value == recipe.epochs
    assert at.selectbox(key="train_schedule").value == recipe.schedule
    assert at.toggle(key="train_early_stopping").value == recipe.early_stopping
    assert at.toggle(key="train_aug_flip").value == recipe.augmentation.flip
    assert at.slider(key="train_aug_shift").value == recipe.augmentation.shift
    assert at.number_input(key="train_seed").value == 7  # the user's seed is kept
    assert at.session_state["train_config"] == dataclasses.replace(recipe, seed=7)  # what Start and the experiment file use
    assert at.button(key="train_use_recipe").disabled  # in use
    at.slider(key="train_epochs").set_value(3).run()  # still free to edit
    assert at.session_state["train_config"].epochs == 3 and not at.button(key="train_use_recipe").disabled


def test_model_page_offers_the_nearest_design_that_fits(monkeypatch):
    at = _offline_app(monkeypatch)
    goto(at, "data")
    at.selectbox(key="data_dataset").set_value("digits").run()
    goto(at, "model")
    at.selectbox(key="model_preset").set_value("LeNet-5").run()
    assert any("does not fit 8×8 images" in info.value for info in at.info)
    at.button(key="model_use_fitted").click().run()
    assert not at.exception and not at.error
    fitted = at.session_state["model_spec"]
    assert fitted.name == "LeNet-5 (edited)" and [b.padding for b in fitted.blocks] == ["same", "same"]
    assert not any("does not fit" in info.value for info in at.info)


def _test_accuracy(name: str, data: datasets.Dataset, epochs: int) -> float:
    config = dataclasses.replace(recipes.recipe_for(name).config, epochs=epochs)
    job = training.TrainingJob(spec.preset(name), data, config)
    job.run()
    progress = job.snapshot()
    assert progress.status == training.FINISHED, progress.message
    return progress.test_accuracy


def test_with_recipes_convolutions_beat_the_dense_net_on_shapes():
    """A small fast variant of BENCHMARKS.md §6: 1,500 Shapes images, every recipe cut to the same 12 epochs.

    The ordering, not the numbers (measured: dense 0.40, LeNet-5 0.51, Simple CNN 0.71).
    """
    data = datasets.load_shapes(count_per_class=300, image_size=28, seed=0)
    dense, lenet, simple = (_test_accuracy(name, data, epochs=12) for name in ("Article baseline", "LeNet-5", "Simple CNN"))
    assert dense < simple, (dense, simple)
    assert dense <= lenet <= simple, (dense, lenet, simple)


def test_best_in_n_minutes_plans_the_recipe_to_the_budget_with_the_data_sets_augmentation(monkeypatch):
    at = _offline_app(monkeypatch)
    goto(at, "data")
    at.selectbox(key="data_dataset").set_value("digits").run()
    goto(at, "model")
    at.selectbox(key="model_preset").set_value("VGG-style mini").run()
    goto(at, "train")
    at.selectbox(key="train_budget").set_value(60.0).run()
    assert not at.exception
    config = at.session_state["train_config"]
    assert config.budget_s == 60.0 and config.epochs == budget.MOST_EPOCHS and at.slider(key="train_epochs").disabled
    assert any("planned to 1 min" in caption.value for caption in at.caption)
    at.button(key="train_use_recipe").click().run()
    assert not at.exception
    assert at.session_state["train_config"] == recipes.budget_config("VGG-style mini", "digits", 60.0)
    assert not at.toggle(key="train_aug_flip").value and at.slider(key="train_aug_shift").value == 0.1  # digits: never flipped
    assert at.button(key="train_use_recipe").disabled
    at.selectbox(key="train_budget").set_value(0.0).run()  # back to the fixed-epoch recipe
    assert at.session_state["train_config"].budget_s is None and not at.slider(key="train_epochs").disabled
