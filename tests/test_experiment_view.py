"""The experiment export: a download button and the headless command; the GPU notice never imports TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]


def _export_page():
    import streamlit as st

    from dcnn_core.data.datasets import DatasetChoice
    from dcnn_core.design import spec
    from dcnn_core.training.config import TrainConfig
    from ui import experiment_view, state

    st.session_state[state.OWNER] = "0123456789abcdef0123456789abcdef"
    choice = DatasetChoice("shapes", {"count_per_class": 10, "image_size": 16})
    experiment_view.draw_experiment_io(spec.preset("Simple CNN"), choice, TrainConfig(epochs=2, seed=9))
    experiment_view.draw_experiment_io(spec.preset("Simple CNN"), DatasetChoice("custom", {"name": "cats"}), TrainConfig())


def test_the_export_offers_the_file_and_the_command():
    at = AppTest.from_function(_export_page, default_timeout=30).run()
    assert not at.exception
    captions = [caption.value for caption in at.caption]
    command = "python -m dcnn_core.headless.train experiment.json --out runs/ --owner 0123456789abcdef0123456789abcdef"
    assert any(command in caption for caption in captions), captions
    assert any("cannot be exported" in caption and "dataset.key" in caption for caption in captions), captions
    [button] = at.get("download_button")
    assert button.proto.id and "train_experiment_download" in button.proto.id


def test_the_exported_json_reads_back():
    from dcnn_core.data.datasets import DatasetChoice
    from dcnn_core.design import spec
    from dcnn_core.headless import experiment
    from dcnn_core.training.config import TrainConfig

    exported = experiment.create(spec.preset("Simple CNN"), DatasetChoice("shapes", {}), TrainConfig(seed=9))
    data = json.loads(exported.to_json())
    assert data["format"] == "dcnn-studio-experiment" and data["config"]["seed"] == 9
    assert experiment.Experiment.from_dict(data) == exported


def test_gpu_notice_is_none_without_importing_tensorflow():
    script = (
        "import sys; from ui import experiment_view as view; "
        "assert view.gpu_notice() is None; assert 'tensorflow' not in sys.modules, 'imported TensorFlow'; "
        "import tensorflow as tf; gpus = len(tf.config.list_physical_devices('GPU')); notice = view.gpu_notice(); "
        "assert (notice is None) == (gpus == 0), notice; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]
