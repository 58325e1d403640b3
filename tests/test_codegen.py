"""The generated Keras script builds the same network as the app and trains it as the app does."""

import dataclasses
import json
import os
import re
import runpy
import subprocess
import sys

import numpy as np
import pytest

from dcnn_core.data import datasets
from dcnn_core.design import backbones, codegen, spec
from dcnn_core.design.build import build_model
from dcnn_core.training import config as training_config
from dcnn_core.training.config import Augmentation, TrainConfig
from dcnn_core.training.job import TrainingJob
from dcnn_core.training.registry import JobRegistry
from tests.helpers import trust_weights


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
    # A fixed two-block CNN, not a preset: the presets' tuning must not change what this test exercises.
    design = spec.ModelSpec("Two-block CNN", blocks=[spec.ConvBlock(filters=32), spec.ConvBlock(filters=64)],
                            head=spec.Head(dense_units=[128], dropout=0.3))  # fmt: skip
    data, config = imbalanced_shapes, _experiment(schedule, learning_rate, patience)
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


# --- a pretrained backbone: the generated script builds it as the app does and trains both phases ---------


def _backbone_spec(**changes) -> spec.ModelSpec:
    design = backbones.default_spec("mobilenet_v3_small")
    return dataclasses.replace(design, backbone=dataclasses.replace(design.backbone, input_size=32, **changes))


def _layer_names(model) -> list[str]:
    """Layer names without Keras's process-wide counters (``rescaling_3``: the third made in this process)."""
    return [re.sub(r"_\d+$", "", layer.name) for layer in model.layers]


@pytest.fixture()
def weights_folder(mobilenet_weights, monkeypatch, tmp_path):
    folder, _ = mobilenet_weights
    monkeypatch.setenv(backbones.WEIGHTS_DIR_VARIABLE, str(folder))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))  # an empty cache: the folder is the only source
    monkeypatch.setattr(backbones, "_host_answers", lambda url: False)  # offline, and fast
    trust_weights(monkeypatch, folder)  # the app checks the file's md5: expect the stand-in's
    return folder


def _with_local_weights(script: str, path) -> str:
    """The script with its ``WEIGHTS = 'imagenet'`` line pointed at a local copy, as its comment tells a reader."""
    return re.sub(r"^WEIGHTS = 'imagenet'.*$", f"WEIGHTS = {str(path)!r}", script, count=1, flags=re.M)


def test_generated_backbone_model_is_the_apps_with_the_folders_weights(weights_folder, mobilenet_weights, tmp_path):
    design, shape = _backbone_spec(), (20, 20, 1)  # grey and smaller than 32: the resize and the channel repeat are used
    script = codegen.generate_script(design, shape, 3, "shapes", TrainConfig())
    entry = backbones.info("mobilenet_v3_small")
    assert "WEIGHTS = 'imagenet'" in script and str(weights_folder) not in script  # the server's folder is never shown
    path = tmp_path / "backbone.py"
    path.write_text(_with_local_weights(script, weights_folder / entry.weights_file))
    generated = runpy.run_path(str(path), run_name="generated")["build_model"]()
    ours = build_model(design, shape, 3)
    assert _layer_names(generated) == _layer_names(ours)
    assert generated.count_params() == ours.count_params()
    assert len(generated.trainable_weights) == len(ours.trainable_weights) == 2  # the head's Dense only
    loaded = [w for layer in backbones.backbone_layers(generated) for w in layer.get_weights()]
    expected = mobilenet_weights[1].get_weights()
    assert len(loaded) == len(expected) and all(np.array_equal(a, b) for a, b in zip(loaded, expected, strict=True))


def test_generated_backbone_script_says_where_other_weights_come_from(monkeypatch, tmp_path):
    monkeypatch.delenv(backbones.WEIGHTS_DIR_VARIABLE, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    imagenet = codegen.generate_script(_backbone_spec(), (32, 32, 3), 3, "shapes", TrainConfig())
    assert "WEIGHTS = 'imagenet'" in imagenet and "Concatenate" not in imagenet  # RGB: no channel repeat
    random = codegen.generate_script(_backbone_spec(weights="random", fine_tune_layers=0), (32, 32, 3), 3, "shapes", TrainConfig())
    assert "WEIGHTS = None" in random and "unfreeze_top" not in random and "FINE_TUNE" not in random


_DRIVER = """
import json, runpy, sys
script = runpy.run_path(sys.argv[1], run_name="generated")
x_train, y_train, x_test, y_test = script["load_data"](sys.argv[2])
model, history = script["train"](x_train, y_train)
names = [layer.name for layer in model.layers]
backbone = model.layers[names.index("grayscale_to_rgb") + 1 : names.index("global_pool")]
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(json.dumps({"history": history.history, "trainable": [layer.name for layer in backbone if layer.trainable], "accuracy": accuracy}))
"""


def test_generated_backbone_script_trains_the_head_then_fine_tunes_the_top_layers(weights_folder, tiny_shapes, tmp_path):
    design = _backbone_spec(fine_tune_layers=5, fine_tune_epochs=2, fine_tune_lr_factor=0.2)
    config = TrainConfig(epochs=2, batch_size=32, seed=4, schedule="cosine", learning_rate=0.002)
    data = tiny_shapes  # 16×16 grey
    np.savez(tmp_path / "dataset.npz", x_train=data.x_train, y_train=data.y_train, x_test=data.x_test, y_test=data.y_test)
    script = codegen.generate_script(design, data.input_shape, data.num_classes, "shapes", config)
    (tmp_path / "script.py").write_text(_with_local_weights(script, weights_folder / backbones.info("mobilenet_v3_small").weights_file))
    (tmp_path / "driver.py").write_text(_DRIVER)
    result = subprocess.run(
        [sys.executable, "driver.py", "script.py", "dataset.npz"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    history = outcome["history"]
    assert len(history["accuracy"]) == len(history["val_loss"]) == config.epochs + 2
    # Phase 2 runs its own cosine schedule from a fifth of the rate, as the app's job does.
    phase2 = backbones.fine_tune_config(config, design.backbone)
    rates = [training_config.scheduled_rate(config, e) for e in range(2)] + [training_config.scheduled_rate(phase2, e) for e in range(2)]
    np.testing.assert_allclose(history["learning_rate"], rates, rtol=1e-5)
    # Exactly the top 5 backbone layers with weights (never batch norm) end trainable: those the app unfreezes.
    app_model = build_model(design, data.input_shape, data.num_classes)
    assert outcome["trainable"] == backbones.unfreeze_top(app_model, 5)
    assert len(outcome["trainable"]) == 5
    assert 0.0 <= outcome["accuracy"] <= 1.0
