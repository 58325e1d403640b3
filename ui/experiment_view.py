"""Export the current data set, design and training settings as an experiment, to train headless elsewhere."""

from __future__ import annotations

import re
import sys

import streamlit as st

from dcnn_core.data.datasets import DatasetChoice
from dcnn_core.headless import experiment
from ui import state

EXPERIMENT_FILE = "experiment.json"
_CLI_OWNER = re.compile(r"^[0-9a-f]{32}$")  # what ``python -m dcnn_core.headless.train --owner`` accepts


def draw_experiment_io(spec, dataset_choice: DatasetChoice, config) -> None:
    """A download button for the experiment JSON, and the one-line command that trains it headless."""
    try:
        exported = experiment.create(spec, dataset_choice, config)
    except ValueError as error:
        st.caption(f"This setup cannot be exported as an experiment: {error}")
        return
    st.download_button(
        "Download experiment (JSON)",
        exported.to_json(),
        file_name=EXPERIMENT_FILE,
        mime="application/json",
        key="train_experiment_download",
        help="Data set, model, training settings and seed in one file: train the same run on a GPU box or across workers.",
    )
    st.caption(f"Train it headless (GPUs, several workers: see docs/headless-and-distributed.md): `{headless_command()}`")


def headless_command() -> str:
    """The command that trains the downloaded file into a run folder this user's app can show."""
    owner = st.session_state.get(state.OWNER, "")
    owner_flag = f" --owner {owner}" if isinstance(owner, str) and _CLI_OWNER.match(owner) else ""
    return f"python -m dcnn_core.headless.train {EXPERIMENT_FILE} --out runs/{owner_flag}"


def gpu_notice() -> str | None:
    """A line about the GPUs TensorFlow sees, or None on CPU — and None while TensorFlow is not imported yet.

    It never imports TensorFlow itself: that costs seconds and hundreds of MB on the home page.
    """
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is None:
        return None
    try:
        gpus = len(tensorflow.config.list_physical_devices("GPU"))
    except Exception:  # a half-imported module: say nothing rather than break the page
        return None
    if gpus == 0:
        return None
    if gpus == 1:
        return "1 GPU visible: training runs on it"
    return (f"{gpus} GPUs visible: the app trains on the first; "
            "headless training (python -m dcnn_core.headless.train) uses all with MirroredStrategy")  # fmt: skip
