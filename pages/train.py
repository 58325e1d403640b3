"""Train: run the designed model on the chosen data, with live curves."""

import streamlit as st

from dcnn_core import plan
from ui import resources, state, training_view

state.ensure_started_from_app()

st.title("Train")
dataset = resources.current_dataset()
spec = state.model_spec_state()
analysis = plan.analyse(spec, dataset.input_shape, dataset.num_classes, resources.settings().max_parameters)
st.caption(f"**{spec.name}** on **{dataset.title}** — {analysis.total_parameters:,} parameters" if analysis.ok else "")

jobs = resources.session_jobs()
active = training_view.any_active(jobs)

with st.expander("Training settings", expanded=not jobs):
    config = training_view.config_controls()

if not analysis.ok:
    st.error(f"This design cannot be trained: {analysis.error} Change it on the Model page.", icon=":material/block:")
else:
    st.button(
        "Start training", key="train_start", type="primary", disabled=active,
        on_click=training_view.start_job, args=(config,),
        help="One training at a time per session; stop the current one to start another." if active else None,
    )  # fmt: skip

job = resources.selected_job()
if job is not None:
    st.fragment(run_every=1.0 if active else None)(training_view.draw_job)(job, active)
else:
    st.info("Press **Start training** to train the model. The curves appear here and keep moving even if you visit other pages.")

if jobs:
    st.subheader("Your runs")
    st.caption("Train the Article baseline and a CNN on the same data to compare them.")
    accuracy_column = st.column_config.ProgressColumn(format="%.3f", min_value=0, max_value=1)
    st.dataframe(training_view.run_rows(jobs), hide_index=True, key="train_runs", column_config={"Best val. accuracy": accuracy_column})
