"""Model: design a network with sliders and see every layer's shape and cost."""

import streamlit as st

from dcnn_core.design import plan
from dcnn_core.results import plots
from ui import model_form, model_view, resources, state
from ui.text import plain

state.ensure_started_from_app()

st.title("Model")
dataset = resources.current_dataset()
model_form.ensure_widget_state()

pretrained = st.session_state.get(model_form.FAMILY_KEY) == model_form.PRETRAINED
st.caption(
    f"Designing for **{plain(dataset.title)}**: input {' × '.join(map(str, dataset.input_shape))}, "
    f"{dataset.num_classes} classes. "
    + ("The backbone's resizing and preprocessing are inside the model." if pretrained else "Pixels are divided by 255 inside the model.")
)
top_left, top_right = st.columns([2, 1], vertical_alignment="bottom")
with top_right.popover("Save or load a design", icon=":material/folder_open:", use_container_width=True):
    model_view.spec_upload()
    download_slot = st.empty()
with top_left:
    model_form.family_picker()
    if not pretrained:
        model_form.preset_picker()

analysis_slot = st.container()
design, summary = st.columns([1, 1], gap="large")
with design:
    if pretrained:
        model_form.backbone_controls()
    else:
        st.slider("Conv blocks", 0, model_form.MAX_BLOCKS, key="model_block_count")
        for index in range(st.session_state["model_block_count"]):
            model_form.block_controls(index)
    model_form.head_controls()

spec = model_form.spec_from_widgets()
st.session_state[state.MODEL_SPEC] = spec
analysis = plan.analyse(spec, dataset.input_shape, dataset.num_classes, resources.engine().rules.max_parameters)

with analysis_slot:
    if not analysis.ok:
        st.error(f"This design cannot be trained: {analysis.error}", icon=":material/block:")
    else:
        model_view.cost_limit(analysis)
        a, b, c, d = st.columns(4)
        a.metric("Parameters", f"{analysis.total_parameters:,}")
        b.metric("Multiply-adds per image", f"{analysis.total_mult_adds / 1e6:,.2f} M")
        c.metric(
            "Activation memory per image",
            f"{analysis.activation_bytes / 1024:,.0f} KiB",
            help="float32 outputs of every layer for one image",
        )
        d.metric("Layers", len(analysis.layers) - 1)
        if analysis.frozen_parameters:
            st.caption(
                f"Phase 1 trains {analysis.trainable_parameters:,} parameters (the head); the backbone's "
                f"{analysis.frozen_parameters:,} stay frozen. Phase 2 (fine-tuning) trains the head and "
                f"{analysis.fine_tune_parameters:,} backbone parameters; batch normalisation stays frozen."
            )

with download_slot:
    model_view.spec_download(spec)

with summary:
    st.markdown(f"**{plain(spec.name)}** — layer by layer")
    st.dataframe(
        {
            "Layer": [layer.name for layer in analysis.layers],
            "Type": [layer.class_name for layer in analysis.layers],
            "Output shape": [plan.format_shape(layer.output_shape) for layer in analysis.layers],
            "Parameters": [layer.parameters for layer in analysis.layers],
            "Multiply-adds": [layer.mult_adds for layer in analysis.layers],
        },
        hide_index=True,
        key="model_summary",
        height=min(36 * (len(analysis.layers) + 1) + 4, 720),
    )

diagram_tab, code_tab, compare_tab = st.tabs(["Diagram", "Keras code", "Article baseline vs this design"])
with diagram_tab:
    if analysis.ok:
        st.plotly_chart(plots.architecture_diagram(analysis.layers), key="model_diagram", config={"displayModeBar": False})
with code_tab:
    model_view.keras_code(spec, dataset, analysis)
with compare_tab:
    model_view.comparison(spec, dataset, analysis)
