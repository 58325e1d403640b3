"""DCNN Studio: navigation over the pages, and the frame every page shares.

Run with ``streamlit run app.py``. TensorFlow is imported only by the pages that
train or predict, so this entry page opens fast.
"""

import sys
import time

import streamlit as st

from ui import frame, resources, sign_in, state, streamlit_private

st.set_page_config(page_title="DCNN Studio", page_icon=":material/neurology:", layout="wide")
streamlit_private.keep_keras_session()  # Streamlit would clear Keras's session after every run, for every user
if not sign_in.gate():  # a server with sign-in configured: nothing before the visitor has signed in
    st.stop()
state.init_state()
resources.restore_drafts()  # a returning user's reload: their run's data set, design and settings

navigation = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/data.py", title="Data", icon=":material/image:"),
        st.Page("pages/model.py", title="Model", icon=":material/account_tree:"),
        st.Page("pages/train.py", title="Train", icon=":material/monitoring:"),
        st.Page("pages/predict.py", title="Predict", icon=":material/search:"),
        st.Page("pages/leaderboard.py", title="Leaderboard", icon=":material/leaderboard:"),
        *([st.Page("pages/room.py", title="Room", icon=":material/groups:")] if resources.settings().instructor_key else []),
    ]
)
frame_slot = st.sidebar.container()
began = time.perf_counter()
navigation.run()
if resources.settings().log_page_times:  # for bench/room.py: how long the server spends on a page, browsers aside
    print(f"page-time {time.time():.3f} {navigation.title} {time.perf_counter() - began:.3f}", file=sys.stderr, flush=True)
frame.draw_frame(frame_slot, navigation.title)  # after the page, so it shows what the page just chose
