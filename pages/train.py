"""Train: run the designed model on the chosen data, with live curves; compare runs."""

import streamlit as st

from dcnn_core.design import plan
from ui import experiment_view, leaderboard_view, resources, runs_view, state, training_view
from ui.text import plain

state.ensure_started_from_app()

if (shared := state.shared_run_from_url()) is not None:  # a read-only share link: that run alone, nothing to act on
    runs_view.draw_shared_run(shared)
    st.stop()

st.title("Train")
dataset = resources.current_dataset()
spec = state.model_spec_state()
analysis = plan.analyse(spec, dataset.input_shape, dataset.num_classes, resources.engine().rules.max_parameters)
runs = resources.session_runs()
active = any(run.active for run in runs)

# Start comes first and stays where it is: the settings fold under it once a run exists, so the live chart appears
# right under Start instead of the button jumping up and the chart sliding under the pointer.
start_slot = st.container()
with st.expander(f"Training settings for **{plain(spec.name)}** on **{plain(dataset.title)}**", expanded=not runs):
    config = training_view.config_controls(dataset)

with start_slot:
    if not analysis.ok:
        st.error(f"This design cannot be trained: {analysis.error} Change it on the Model page.", icon=":material/block:")
    else:
        st.button(
            "Start training", key="train_start", type="primary", disabled=active, icon=":material/play_arrow:",
            on_click=training_view.start_job, args=(config,),
            help="One training at a time per user; stop the current one to start another." if active else None,
        )  # fmt: skip
    refused = st.session_state.pop(training_view.REFUSED, None)
    if refused:  # next to the button that was refused
        st.warning(refused, icon=":material/block:")
    room_line = resources.room_line(config.epochs)
    if room_line:
        st.caption(room_line)

with st.expander("Train it elsewhere: headless, on GPUs or several workers"):
    experiment_view.draw_experiment_io(spec, state.dataset_choice(), config)
notice = experiment_view.gpu_notice()
if notice:
    st.caption(notice)

run = resources.selected_run()
if run is not None:
    st.fragment(run_every=resources.live_refresh_s() if active else None)(training_view.draw_run)(run, active)
    leaderboard_view.draw_publish(run)
else:
    st.info("Press **Start training**. The curves appear here and keep moving while you visit other pages.")

if runs:
    runs_view.draw_runs(runs)
