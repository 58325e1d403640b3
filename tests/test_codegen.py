"""The generated Keras script builds the same network as the app, and runs."""

import os
import runpy
import subprocess
import sys

import pytest

from dcnn_core import codegen, spec
from dcnn_core.build import build_model
from dcnn_core.training import TrainConfig


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
    config = TrainConfig(epochs=1, batch_size=64, seed=1)
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
