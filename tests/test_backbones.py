"""Pretrained backbones, offline: weight files written from randomly initialised backbones under keras's own
names (their md5 trusted for the test) are loaded from DCNN_WEIGHTS_DIR; freezing, fine-tuning the top N, saving,
and what users read when there are no weights or the wrong ones (one sentence, no path)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from dcnn_core.data.datasets import DatasetChoice
from dcnn_core.design import backbones, plan
from dcnn_core.design.build import build_model
from dcnn_core.design.spec import Backbone, ModelSpec
from dcnn_core.headless import experiment
from dcnn_core.runtime import import_keras
from dcnn_core.training.config import TrainConfig
from tests.helpers import trust_weights

SIZE = 32  # the smallest input both keras.applications backbones accept
INPUT_SHAPE = (20, 20, 1)  # grey, and smaller than the backbone's input: both the resize and the channel repeat are used
CLASSES = 3


def _spec(name: str = "mobilenet_v3_small", **backbone) -> ModelSpec:
    spec = backbones.default_spec(name)
    return replace(spec, backbone=replace(spec.backbone, **{"input_size": SIZE, **backbone}))


def _weights(layers) -> list[np.ndarray]:
    return [w for layer in layers for w in layer.get_weights()]


@pytest.fixture(scope="module")
def source_backbones(tmp_path_factory):
    """One randomly initialised copy of each backbone, saved as keras's no-top .h5 file in a fresh folder."""
    from keras.src.legacy.saving import legacy_h5_format  # the format keras.applications' files are in

    keras = import_keras()
    folder = tmp_path_factory.mktemp("weights")
    sources = {}
    for name, entry in backbones.CATALOGUE.items():
        keras.utils.set_random_seed(7)
        network = getattr(keras.applications, entry.application)(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
        with h5py.File(folder / entry.weights_file, "w") as file:
            legacy_h5_format.save_weights_to_hdf5_group(file, network)
        sources[name] = network
    return folder, sources


@pytest.fixture()
def weights_dir(source_backbones, monkeypatch, tmp_path):
    folder, _ = source_backbones
    monkeypatch.setenv(backbones.WEIGHTS_DIR_VARIABLE, str(folder))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))  # an empty cache: the folder is the only source
    monkeypatch.setattr(backbones, "_host_answers", lambda url: False)  # offline, and fast
    trust_weights(monkeypatch, folder)
    return folder


@pytest.mark.parametrize("name", list(backbones.CATALOGUE))
def test_the_model_loads_the_weights_from_the_folder_and_freezes_the_backbone(name, weights_dir, source_backbones):
    status = backbones.weights_status(name)
    assert (status.available, status.source) == (True, "folder")
    spec = _spec(name)
    model = build_model(spec, INPUT_SHAPE, CLASSES)
    layers = backbones.backbone_layers(model)
    expected = source_backbones[1][name].get_weights()
    loaded = _weights(layers)
    assert len(loaded) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(loaded, expected, strict=True))
    analysis = plan.analyse(spec, INPUT_SHAPE, CLASSES)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert model.count_params() == analysis.total_parameters
    assert analysis.frozen_parameters == source_backbones[1][name].count_params()
    assert trainable == analysis.trainable_parameters == analysis.total_parameters - analysis.frozen_parameters
    assert not any(layer.trainable for layer in layers)
    assert model.predict(np.zeros((2, *INPUT_SHAPE), "uint8"), verbose=0).shape == (2, CLASSES)


def test_fine_tuning_unfreezes_exactly_the_top_layers_and_never_batch_norm(weights_dir):
    spec = _spec(fine_tune_layers=7)
    model = build_model(spec, INPUT_SHAPE, CLASSES)
    layers = backbones.backbone_layers(model)
    tunable = [layer for layer in layers if layer.weights and type(layer).__name__ not in backbones.NEVER_UNFROZEN]
    names = backbones.unfreeze_top(model, 7)
    assert names == [layer.name for layer in tunable[-7:]]
    assert [layer.name for layer in layers if layer.trainable] == names
    assert not any(layer.trainable for layer in layers if type(layer).__name__ == "BatchNormalization")
    head = sum(int(np.prod(v.shape)) for layer in model.layers if layer not in layers for v in layer.trainable_weights)
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert trainable - head == plan.analyse(spec, INPUT_SHAPE, CLASSES).fine_tune_parameters > 0
    assert backbones.unfreeze_top(model, 0) == [] and not any(layer.trainable for layer in layers)


def test_two_phases_train_the_head_then_the_top_layers_with_batch_norm_in_inference_mode(weights_dir, tmp_path):
    keras = import_keras()
    spec = _spec(fine_tune_layers=3, fine_tune_epochs=1, fine_tune_lr_factor=0.1)
    config = TrainConfig(learning_rate=0.01, epochs=1, batch_size=8)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (16, *INPUT_SHAPE), dtype=np.uint8), np.arange(16) % CLASSES
    model = build_model(spec, INPUT_SHAPE, CLASSES)
    layers = backbones.backbone_layers(model)
    before = [w.copy() for w in _weights(layers)]
    model.compile(keras.optimizers.Adam(config.learning_rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=config.epochs, batch_size=config.batch_size, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, _weights(layers), strict=True)), "phase 1 changed the backbone"

    assert backbones.fine_tunes(spec)
    phase2 = backbones.fine_tune_config(config, spec.backbone)
    assert (phase2.learning_rate, phase2.epochs) == pytest.approx((0.001, 1))
    tuned = backbones.unfreeze_top(model, spec.backbone.fine_tune_layers)
    model.compile(keras.optimizers.Adam(phase2.learning_rate), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, initial_epoch=config.epochs, epochs=config.epochs + phase2.epochs, batch_size=8, verbose=0)
    assert history.epoch == [1]  # the curves go on from phase 1's last epoch
    for layer in layers:
        changed = any(not np.array_equal(a, b) for a, b in zip(layer.get_weights(), [before.pop(0) for _ in layer.weights], strict=True))
        assert changed == (layer.name in tuned), layer.name  # batch norm's moving statistics included: inference mode

    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(x[:4], verbose=0), model.predict(x[:4], verbose=0), rtol=1e-5, atol=1e-6)
    assert backbones.unfreeze_top(reloaded, 3) == tuned  # a saved run can be fine-tuned (Continue) after a restart


def test_no_weights_gives_one_sentence_and_random_initialisation_still_works(monkeypatch, tmp_path):
    monkeypatch.setenv(backbones.WEIGHTS_DIR_VARIABLE, str(tmp_path / "empty"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setattr(backbones, "_host_answers", lambda url: False)
    status = backbones.weights_status("mobilenet_v3_small")
    assert not status.available and status.message == backbones.NOT_AVAILABLE
    assert "random initialisation" in status.message and status.message.count(". ") == 0
    for detail in (backbones.CATALOGUE["mobilenet_v3_small"].weights_file, backbones.WEIGHTS_DIR_VARIABLE):
        assert detail not in status.message and detail in backbones.organiser_help("mobilenet_v3_small")  # for the organiser
    assert str(tmp_path) not in status.message + backbones.organiser_help("mobilenet_v3_small")
    with pytest.raises(backbones.WeightsUnavailable, match="^ImageNet weights are not available on this server"):
        build_model(_spec(), INPUT_SHAPE, CLASSES)
    model = build_model(_spec(weights="random"), INPUT_SHAPE, CLASSES)
    assert model.output_shape == (None, CLASSES)


def test_offline_on_purpose_never_probes_the_download_host(monkeypatch, tmp_path):
    monkeypatch.delenv(backbones.WEIGHTS_DIR_VARIABLE, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("DCNN_OFFLINE", "1")
    probes = []
    monkeypatch.setattr(backbones, "_host_answers", lambda url: probes.append(url) or True)
    assert backbones.weights_status("efficientnet_b0").source == "missing" and probes == []


def test_a_wrong_file_in_the_folder_is_refused_with_one_sentence_and_logged(source_backbones, monkeypatch, tmp_path, caplog):
    """EfficientNet's file under MobileNet's name: its md5 is not MobileNet's, so it is never loaded (nor deleted)."""
    folder, _ = source_backbones
    trust_weights(monkeypatch, folder)
    wrong = tmp_path / backbones.CATALOGUE["mobilenet_v3_small"].weights_file
    wrong.write_bytes((folder / backbones.CATALOGUE["efficientnet_b0"].weights_file).read_bytes())
    monkeypatch.setenv(backbones.WEIGHTS_DIR_VARIABLE, str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    monkeypatch.setattr(backbones, "_host_answers", lambda url: False)
    status = backbones.weights_status("mobilenet_v3_small")
    assert (status.available, status.source, status.message) == (False, "damaged", backbones.DAMAGED)
    assert status.message == "The ImageNet weights on this server are damaged; the organiser has been told (server log)."
    with pytest.raises(backbones.WeightsUnavailable) as refused:
        build_model(_spec(), INPUT_SHAPE, CLASSES)
    assert str(refused.value) == backbones.DAMAGED
    assert wrong.exists()  # the organiser's file: refused, never deleted
    assert str(wrong) in caplog.text  # the details are in the server log


def test_a_file_with_the_right_hash_that_keras_cannot_load_is_refused_without_its_path(source_backbones, monkeypatch, tmp_path):
    folder, _ = source_backbones
    wrong = tmp_path / backbones.CATALOGUE["mobilenet_v3_small"].weights_file
    wrong.write_bytes((folder / backbones.CATALOGUE["efficientnet_b0"].weights_file).read_bytes())
    trust_weights(monkeypatch, tmp_path)  # as if the catalogue's md5 were wrong: the load itself must refuse it
    monkeypatch.setenv(backbones.WEIGHTS_DIR_VARIABLE, str(tmp_path))
    monkeypatch.setattr(backbones, "_host_answers", lambda url: False)
    with pytest.raises(backbones.WeightsUnavailable) as refused:
        build_model(_spec(), INPUT_SHAPE, CLASSES)
    assert str(refused.value) == backbones.DAMAGED and str(tmp_path) not in str(refused.value)


def test_the_spec_carries_the_backbone_and_old_files_still_load():
    spec = _spec("efficientnet_b0", fine_tune_layers=4)
    assert ModelSpec.from_json(spec.to_json()) == spec
    head = {"pooling": "flatten", "dense_units": [], "activation": "relu", "dropout": 0.0}
    old = {"name": "Old", "rescale": True, "blocks": [], "head": head}
    assert ModelSpec.from_dict(old).backbone is None
    with pytest.raises(ValueError, match="Unknown field"):
        ModelSpec.from_dict({**spec.to_dict(), "backbone": {"name": "efficientnet_b0", "layers": 3}})
    with pytest.raises(ValueError, match="Backbone: name"):
        ModelSpec.from_dict({**spec.to_dict(), "backbone": {"name": "resnet50"}})
    with pytest.raises(ValueError, match="no conv blocks"):
        ModelSpec.from_dict({**spec.to_dict(), "blocks": [{}]})
    run = experiment.create(spec, DatasetChoice("shapes", {}), TrainConfig())
    assert experiment.Experiment.from_dict(json.loads(run.to_json())).spec.backbone == Backbone(
        "efficientnet_b0", SIZE, "imagenet", 4, 5, 0.1
    )


def test_the_analysis_refuses_too_small_an_input_and_shows_the_backbone_output():
    too_small = plan.analyse(_spec(input_size=24), INPUT_SHAPE, CLASSES)
    assert "at least 32×32" in too_small.error
    analysis = plan.analyse(_spec(input_size=96), (28, 28, 3), CLASSES)
    rows = {layer.name: layer for layer in analysis.layers}
    assert "grayscale_to_rgb" not in rows and rows["resize"].output_shape == (96, 96, 3)
    assert rows["backbone"].output_shape == (3, 3, 576) and rows["backbone"].mult_adds > 9_000_000


def _model_page(monkeypatch, weights_dir: Path, keras_home: Path):
    """The Model page of a server offline on purpose, with ``DCNN_WEIGHTS_DIR`` set, its pretrained family picked."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DCNN_OFFLINE", "1")  # no download of the default data set, no probe of the weights' host
    monkeypatch.setenv(backbones.WEIGHTS_DIR_VARIABLE, str(weights_dir))
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=90)
    at.run()
    at.switch_page("pages/model.py")
    at.run()
    at.radio(key="model_family").set_value("Pretrained backbone").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _everything_on_the_page(at) -> str:
    """Every element the page drew (tabs and expanders included), as protobuf text: labels, options, code, captions."""
    parts = []

    def walk(node) -> None:
        if getattr(node, "proto", None) is not None:
            parts.append(str(node.proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at.main)
    walk(at.sidebar)
    return "\n".join(parts)


def test_the_model_page_offers_the_pretrained_family_with_its_costs(monkeypatch, tmp_path):
    """Offline, with no weights in the organiser's folder: ImageNet weights are shown as not available, and disabled."""
    at = _model_page(monkeypatch, tmp_path / "empty-weights-folder", tmp_path / "keras-home")
    weights = at.radio(key="model_backbone_weights")
    assert weights.value == "random" and weights.disabled  # random initialisation is the one choice here
    assert weights.options[0] == "ImageNet weights (transfer learning) (not available on this server)"
    assert [w.value for w in at.warning if "ImageNet" in w.value] == [backbones.NOT_AVAILABLE]
    organiser = [e for e in at.expander if e.label == "For the organiser"]
    assert len(organiser) == 1
    instructions = " ".join(m.value for m in organiser[0].markdown)
    assert backbones.WEIGHTS_DIR_VARIABLE in instructions and backbones.CATALOGUE["mobilenet_v3_small"].weights_file in instructions
    assert str(tmp_path) not in _everything_on_the_page(at)  # nor any other server path
    at.select_slider(key="model_backbone_input_size").set_value(128).run()
    at.slider(key="model_backbone_fine_tune_layers").set_value(5).run()
    assert not at.exception, [e.value for e in at.exception]
    spec = at.session_state["model_spec"]
    assert spec.backbone == Backbone("mobilenet_v3_small", 128, "random", 5, 5, 0.1) and spec.name == "MobileNetV3-Small (random init)"
    caption = " ".join(c.value for c in at.caption)
    assert "stay frozen" in caption and f"{backbones.CATALOGUE['mobilenet_v3_small'].parameters:,}" in caption
    at.radio(key="model_family").set_value("Design from scratch").run()
    assert at.session_state["model_spec"].backbone is None and not at.exception


def test_with_weights_in_the_folder_the_page_offers_them_and_never_shows_the_folder(source_backbones, monkeypatch, tmp_path):
    folder, _ = source_backbones
    trust_weights(monkeypatch, folder)
    at = _model_page(monkeypatch, folder, tmp_path / "keras-home")
    weights = at.radio(key="model_backbone_weights")
    assert weights.value == "imagenet" and not weights.disabled and weights.options[0] == "ImageNet weights (transfer learning)"
    assert "ImageNet weights are on this server." in [c.value for c in at.caption]
    assert not [e for e in at.expander if e.label == "For the organiser"]
    assert "WEIGHTS = 'imagenet'" in at.code[0].value  # the generated script downloads keras's weights on its reader's machine
    page = _everything_on_the_page(at)
    assert str(folder) not in page and backbones.WEIGHTS_DIR_VARIABLE not in page
    assert backbones.CATALOGUE["mobilenet_v3_small"].weights_file not in page


def test_a_training_job_runs_both_phases_and_shows_where_fine_tuning_began(weights_dir, source_backbones):
    """Through the app's own job: phase 1 keeps the backbone as loaded, phase 2 changes only the top layers."""
    from dcnn_core.data import datasets
    from dcnn_core.training import job as training

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (48, *INPUT_SHAPE), dtype=np.uint8), np.arange(48) % CLASSES
    data = datasets.make_dataset("custom", "Tiny", "test", images, labels, images[:12], labels[:12], ("a", "b", "c"), False)
    spec = _spec(fine_tune_layers=3, fine_tune_epochs=2)
    job = training.TrainingJob(spec, data, TrainConfig(epochs=2, batch_size=16, validation_split=0.25))
    assert job.snapshot().epochs == 4  # two of the head, two of fine-tuning
    job.run()
    progress = job.snapshot()
    assert progress.status == training.FINISHED, progress.message
    assert progress.epoch == 4 and progress.fine_tune_from == 2
    trainable = [layer for layer in backbones.backbone_layers(job.model) if layer.trainable]
    assert len(trainable) == 3 and not any("normalization" in type(layer).__name__.lower() for layer in trainable)
    _, sources = source_backbones
    source = {layer.name: layer for layer in sources["mobilenet_v3_small"].layers}
    frozen_same = [
        all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), source[layer.name].get_weights(), strict=True))
        for layer in backbones.backbone_layers(job.model)
        if layer.name in source and layer.get_weights() and not layer.trainable
    ]
    assert frozen_same and all(frozen_same)  # whatever stayed frozen is exactly the loaded weights
    changed = [
        not all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), source[layer.name].get_weights(), strict=True))
        for layer in trainable
        if layer.name in source
    ]
    assert any(changed)  # fine-tuning moved the unfrozen layers
