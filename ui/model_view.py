"""The Model page's views below the sliders: save/load, diagram, code, comparison."""

from __future__ import annotations

import io
import math

import numpy as np
import streamlit as st

from dcnn_core import naming
from dcnn_core.data.datasets import Dataset
from dcnn_core.design import codegen, plan
from dcnn_core.design import spec as model_spec
from dcnn_core.results import plots
from dcnn_core.room.rules import Refused
from ui import model_form, resources, state
from ui.text import plain


def cost_limit(analysis: plan.Analysis) -> None:
    """The server's refusal of a training step this costly, before the user goes to Train (at the Train page's batch size)."""
    batch_size = state.train_config().batch_size
    try:
        resources.engine().rules.check_cost(analysis, batch_size)
    except Refused as refusal:
        st.error(f"This design is over this server's cost limit at the Train page's batch size of {batch_size}. {refusal}",
                 icon=":material/block:")  # fmt: skip


def spec_upload() -> None:
    """Load a design from a JSON file; runs before the sliders so it can fill them."""
    upload = st.file_uploader("Load a design (.json)", type=["json"], key="model_spec_upload")
    if upload is None or st.session_state.get("model_loaded_file") == upload.file_id:
        return
    st.session_state["model_loaded_file"] = upload.file_id
    if upload.size > 200_000:
        st.error(f"'{plain(upload.name)}' is too large for a design file.", icon=":material/block:")
        return
    try:
        loaded = model_spec.ModelSpec.from_json(upload.getvalue())
    except ValueError as error:
        st.error(f"'{plain(upload.name)}' is not a usable design: {plain(str(error))}", icon=":material/block:")
        return
    model_form.load_spec_into_widgets(loaded)
    st.success(f"Loaded the design '{plain(loaded.name)}' from {plain(upload.name)}.", icon=":material/check_circle:")


def spec_download(spec: model_spec.ModelSpec) -> None:
    st.download_button(
        "Save this design (.json)", spec.to_json(), file_name=f"{naming.slug(spec.name, 'design')}.json",
        mime="application/json", key="model_spec_download", icon=":material/download:",
    )  # fmt: skip


def keras_code(spec: model_spec.ModelSpec, dataset: Dataset, analysis: plan.Analysis) -> None:
    if not analysis.ok:
        st.info("Fix the design first; the code is generated for designs that can train.")
        return
    source_key = state.dataset_choice().key
    script = codegen.generate_script(spec, dataset.input_shape, dataset.num_classes, source_key, state.train_config())
    st.caption(
        "A standalone script: the same layers and the Train page's whole experiment — optimizer, schedule, early stopping, "
        "class weights, augmentation, validation split and seed. The copy button is at the top right of the code."
    )
    st.code(script, language="python", height=420)
    left, right = st.columns(2)
    left.download_button(
        "Download the script", script, file_name=f"{naming.slug(spec.name, 'design')}.py", mime="text/x-python",
        key="model_code_download", icon=":material/download:",
    )  # fmt: skip
    if source_key not in ("fashion_mnist", "mnist", "cifar10", "digits"):
        right.download_button(
            "Download the data as .npz", lambda: _npz_bytes(dataset), file_name="dataset.npz",
            mime="application/octet-stream", key="model_data_download", icon=":material/download:",
        )  # fmt: skip


def _npz_bytes(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x_train=dataset.x_train, y_train=dataset.y_train, x_test=dataset.x_test, y_test=dataset.y_test)
    return buffer.getvalue()


def _best_accuracy(spec_name: str, dataset: Dataset) -> float | None:
    """Best validation accuracy among this session's runs of ``spec_name`` on ``dataset``."""
    best = None
    choice = state.dataset_choice()
    for run in resources.session_runs():
        same_data = run.dataset_ref.get("key") == choice.key and (run.dataset_ref.get("options") or {}) == choice.options
        if run.spec.name == spec_name and same_data:
            values = [v for v in run.history["val_accuracy"] if math.isfinite(v)]
            if values:
                best = max(best or 0.0, max(values))
    return best


def comparison(spec: model_spec.ModelSpec, dataset: Dataset, analysis: plan.Analysis) -> None:
    """The article's point, side by side: the dense baseline against this design."""
    baseline = model_spec.preset("Article baseline")
    base_analysis = plan.analyse(baseline, dataset.input_shape, dataset.num_classes)
    if not analysis.ok:
        st.info("Fix the design first to compare it.")
        return
    names = [baseline.name, spec.name]
    accuracies = [_best_accuracy(baseline.name, dataset), _best_accuracy(spec.name, dataset)]
    st.dataframe(
        {
            "Design": names,
            "Parameters": [base_analysis.total_parameters, analysis.total_parameters],
            "Multiply-adds": [base_analysis.total_mult_adds, analysis.total_mult_adds],
            "Best val. accuracy": accuracies,
        },
        hide_index=True, key="model_comparison",
        column_config={"Best val. accuracy": st.column_config.NumberColumn(format="%.3f")},
    )  # fmt: skip
    left, right = st.columns(2)
    left.plotly_chart(
        plots.comparison_bars(names, [base_analysis.total_parameters, analysis.total_parameters], "Parameters"),
        key="model_compare_params",
    )
    right.plotly_chart(
        plots.comparison_bars(names, [base_analysis.total_mult_adds, analysis.total_mult_adds], "Multiply-adds per image"),
        key="model_compare_macs",
    )
    if None in accuracies:
        st.caption(
            "Train both on the Train page (same data) to see their accuracy here. A dense layer weighs every pixel "
            "separately, so a pattern learned in one place is unknown elsewhere; a convolution slides the same small "
            "filters over every position. A CNN spends more multiply-adds; most of its parameters sit in its dense head — "
            "the ResNet- and MobileNet-style presets replace it with global average pooling and need far fewer."
        )
