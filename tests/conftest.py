"""Shared fixtures: tiny seeded data, and one small trained model for the whole session."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("DCNN_TF_THREADS", "2")  # tests own the machine; the app keeps a core free
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests run trainings on pytest's own thread too; lowering it would lower every server and cluster a later test starts
# (they inherit it) below the browsers driving them. tests/test_training_priority.py checks the app's default (10).
os.environ["DCNN_TRAINING_NICE"] = "0"
os.environ.setdefault("DCNN_RUNS_DIR", tempfile.mkdtemp(prefix="dcnn-test-runs-"))  # never the repo's runs/

from dcnn_core.training.engines.ray_setup import RAY_ENVIRONMENT  # noqa: E402

for _name, _value in RAY_ENVIRONMENT.items():  # as the app sets them, before any test module imports Ray
    os.environ.setdefault(_name, _value)

from dcnn_core.data import datasets  # noqa: E402
from dcnn_core.design import spec  # noqa: E402
from dcnn_core.training import job as training  # noqa: E402


@pytest.fixture(scope="session")
def tiny_shapes() -> datasets.Dataset:
    """30 images per shape, 16×16 grayscale: trains in about a second."""
    return datasets.load_shapes(count_per_class=30, image_size=16, seed=1)


@pytest.fixture(scope="session")
def digits() -> datasets.Dataset:
    return datasets.load_digits()


@pytest.fixture(scope="session")
def trained_job(tiny_shapes) -> training.TrainingJob:
    """A Simple CNN trained for 2 epochs on tiny Shapes, through the real job machinery."""
    job = training.TrainingJob(spec.preset("Simple CNN"), tiny_shapes, training.TrainConfig(epochs=2, batch_size=16, seed=3))
    job.run()
    assert job.status == training.FINISHED, job.snapshot().message
    return job


@pytest.fixture(scope="session")
def mobilenet_weights(tmp_path_factory):
    """A randomly initialised MobileNetV3-Small (32×32) and a folder holding its weights as keras's own no-top .h5 file.

    Offline stand-in for ImageNet weights: point DCNN_WEIGHTS_DIR at the folder. Returns (folder, network).
    """
    import h5py
    from keras.src.legacy.saving import legacy_h5_format  # the format keras.applications' files are in

    from dcnn_core.design import backbones
    from dcnn_core.runtime import import_keras

    keras = import_keras()
    entry = backbones.info("mobilenet_v3_small")
    folder = tmp_path_factory.mktemp("mobilenet-weights")
    keras.utils.set_random_seed(11)
    network = getattr(keras.applications, entry.application)(include_top=False, weights=None, input_shape=(32, 32, 3))
    with h5py.File(folder / entry.weights_file, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, network)
    return folder, network
