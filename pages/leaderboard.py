"""Leaderboard: the room's published runs, best first per data set; load any design and train it yourself."""

import streamlit as st

from ui import leaderboard_view, state

state.ensure_started_from_app()

st.title("Leaderboard")
st.caption(
    "Runs the room chose to publish: design, training settings, test accuracy. No weights are shared — "
    "load a design and train it yourself. Does the dense baseline beat the convolutions?"
)
leaderboard_view.draw_leaderboard()
