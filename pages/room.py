"""Room (instructor only): every training in the server, the server's load and limits; stop any training."""

import streamlit as st

from ui import room_view, state

state.ensure_started_from_app()

st.title("Room")
if room_view.unlocked():
    st.fragment(run_every=3.0)(room_view.draw_live)()  # the room changes by itself: refresh what it shows
    left, right = st.columns(2, gap="large")
    with left:
        st.subheader("Room limits")
        room_view.draw_limits()
    with right:
        st.subheader("Leaderboard")
        room_view.draw_leaderboard_controls()
