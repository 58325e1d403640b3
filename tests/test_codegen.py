"""The generated Keras script builds the same network as the app and trains it as the app does."""

import dataclasses
import os
import re
import runpy
import subprocess
import sys

import numpy as np
import pytest

from dcnn_core import codegen, datasets, spec, training_config
from dcnn_core.build import build_model
from dcnn_core.training import JobRegistry, TrainingJob
from dcnn_core.training_config import Augmentation, TrainConfig


@pytest.mark.parametrize("name", list(spec.PRESETS))
def test_generated_model_matches_the_app_model(name, tmp_path):
    design = spec.preset(name)
    shape = (32, 32, 3)
    script = codegen.generate_script(design, shape, 10, "cifar10", TrainConfig())
    path = tmp_path / "generated.py"
    path.write_text(script)
    generated = runpy.run_path(str(path), run_name="generated")["build_model"]()
    ours = build_model(design, shape, 10)
    assert generated.count_params() == ours.count_params()
    assert tuple(generated.output.shape) == tuple(ours.output.shape) == (None, 10)
    assert [layer.name for layer in generated.layers] == [layer.name for layer in ours.layers]


def test_generated_script_trains_end_to_end_on_digits(tmp_path):
    design = spec.preset("Simple CNN")
    config = TrainConfig(epochs=2, batch_size=64, seed=1, schedule="cosine", early_stopping=True, class_weights=True,
                         augmentation=Augmentation(zoom=0.1, contrast=0.1))  # fmt: skip
    path = tmp_path / "simple_cnn.py"
    path.write_text(codegen.generate_script(design, (8, 8, 1), 10, "digits", config))
    result = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=240, env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "test accuracy" in result.stdout


def test_generated_script_for_generated_data_loads_an_npz(tmp_path):
    script = codegen.generate_script(spec.preset("Simple CNN"), (28, 28, 1), 6, "shapes", TrainConfig())
    assert "np.load(path)" in script and "dataset.npz" in script


# --- the whole experiment: the generated script trains as the app does ---------------------------


@pytest.fixture(scope="module")
def imbalanced_shapes():
    """Tiny Shapes with a third of class 0 kept in training: class weights matter."""
    base = datasets.load_shapes(count_per_class=30, image_size=16, seed=1)
    keep = np.flatnonzero((base.y_train != 0) | (np.arange(len(base.y_train)) % 3 == 0))
    return dataclasses.replace(base, x_train=base.x_train[keep], y_train=base.y_train[keep])


def _experiment(schedule: str, learning_rate: float, patience: int) -> TrainConfig:
    augmentation = Augmentation(flip=True, shift=0.1, rotation=0.05)
    return TrainConfig(learning_rate=learning_rate, epochs=20, batch_size=16, validation_split=0.25, seed=2, schedule=schedule,
                       step_every=3, early_stopping=True, patience=patience, class_weights=True, augmentation=augmentation)  # fmt: skip


@pytest.mark.parametrize(("schedule", "learning_rate", "patience"), [("cosine", 0.003, 2), ("step", 0.005, 1)])
def test_generated_script_reproduces_the_apps_run(imbalanced_shapes, tmp_path, schedule, learning_rate, patience):
    data, design = imbalanced_shapes, spec.preset("Simple CNN")
    config = _experiment(schedule, learning_rate, patience)
    job = JobRegistry(1).submit(TrainingJob(design, data, config))
    assert job.wait(300)
    app = job.snapshot().history
    assert 1 < len(app["accuracy"]) < config.epochs, "the run must stop early for this test to check early stopping"

    np.savez(tmp_path / "dataset.npz", x_train=data.x_train, y_train=data.y_train, x_test=data.x_test, y_test=data.y_test)
    path = tmp_path / "experiment.py"
    path.write_text(codegen.generate_script(design, data.input_shape, data.num_classes, "shapes", config))
    script = runpy.run_path(str(path), run_name="generated")
    x_train, y_train, _, _ = script["load_data"](str(tmp_path / "dataset.npz"))
    model, history = script["train"](x_train, y_train)

    assert len(history.history["accuracy"]) == len(app["accuracy"])
    assert history.history["accuracy"][-1] == pytest.approx(app["accuracy"][-1], abs=0.03)
    assert history.history["val_loss"][-1] == pytest.approx(app["val_loss"][-1], abs=0.03)
    rates = [training_config.scheduled_rate(config, epoch) for epoch in range(len(app["accuracy"]))]
    np.testing.assert_allclose(history.history["learning_rate"], rates, rtol=1e-5)
    # The best epoch's weights are back, as in the app: the validation loss is the lowest seen.
    _, _, x_validation, y_validation = script["split_train_validation"](x_train, y_train)
    loss, _ = model.evaluate(x_validation, y_validation, verbose=0)
    assert loss == pytest.approx(min(history.history["val_loss"]), abs=1e-4)


def test_generated_script_writes_the_plateau_schedule_and_every_augmentation():
    augmentation = Augmentation(flip=True, rotation=0.1, zoom=0.2, shift=0.1, contrast=0.3)
    config = TrainConfig(schedule="plateau", step_factor=0.3, patience=4, augmentation=augmentation)
    script = codegen.generate_script(spec.preset("Simple CNN"), (16, 16, 1), 6, "shapes", config)
    assert "ReduceLROnPlateau(monitor='val_loss', factor=0.3, patience=4)" in script
    assert "EarlyStopping" not in script and "class_weight=None" in script
    names = re.findall(r"layers\.(Random\w+)\(", script)
    assert names == ["RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast"]
    plain = codegen.generate_script(spec.preset("Simple CNN"), (16, 16, 1), 6, "shapes", TrainConfig())
    assert "augmentation()" not in plain and "LearningRateScheduler" not in plain


@pytest.mark.parametrize("optimizer", training_config.OPTIMIZERS)
def test_generated_optimizer_is_the_one_training_builds(optimizer, tmp_path):
    import keras

    config = TrainConfig(optimizer=optimizer, learning_rate=0.02)
    script = codegen.generate_script(spec.preset("Article baseline"), (8, 8, 1), 10, "digits", config)
    call = re.search(r"optimizer=(keras\.optimizers\.\w+\([^)]*\))", script).group(1)
    path = tmp_path / "optimizer.py"
    path.write_text(f"import keras\noptimizer = {call}\n")
    generated = runpy.run_path(str(path))["optimizer"]
    built = training_config.build_optimizer(keras, config)
    assert type(generated) is type(built)
    ignore = ("name",)
    assert {k: v for k, v in generated.get_config().items() if k not in ignore} == {
        k: v for k, v in built.get_config().items() if k not in ignore
    }
