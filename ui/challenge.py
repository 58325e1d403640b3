"""Home's one click: the article's own data at full size, the best preset planned to five minutes, started.

The article's dense net reaches 0.8763 on Fashion-MNIST after 10 epochs. Here the same 60,000 training images
go to ``CHALLENGE_PRESET`` with its recipe planned to ``CHALLENGE_BUDGET_S`` (``recipes.budget_config``: the
epochs that fit, flips and small shifts for clothes, a cosine that ends with the time); on a shared server the
room's limits still apply (``ServerRules.plan_run``). BENCHMARKS.md §11 says what to expect and why.
"""

from __future__ import annotations

import streamlit as st

from dcnn_core.data import datasets
from dcnn_core.design import recipes
from dcnn_core.design import spec as model_spec
from dcnn_core.room.rules import Refused
from ui import model_form, resources, state, training_view

ARTICLE_ACCURACY = model_spec.ARTICLE_TEST_ACCURACY
CHALLENGE_PRESET = "Simple CNN"  # the most accuracy per minute on Fashion-sized sets here (BENCHMARKS.md §11)
CHALLENGE_BUDGET_S = 300.0
EXPECTED = "about 0.92–0.93"  # measured 0.928 on 2 cores with native bfloat16 (15 epochs fitted); fewer fit without (BENCHMARKS §11)
ERROR = "home_challenge_error"  # one sentence when the click could not start the run


def start_challenge() -> bool:
    """Fashion-MNIST, the preset and its five-minute plan into the session, and the run started.

    False, with a sentence under ``ERROR``, when the data cannot be had (offline) or the server refuses the run;
    the session's data set, design and settings are then left as they were.
    """
    from dcnn_core.runtime import import_keras

    choice = datasets.DatasetChoice("fashion_mnist", {})
    try:
        dataset = resources.load_dataset(choice)
    except datasets.DatasetUnavailable as error:
        st.session_state[ERROR] = f"{error} The challenge needs the real Fashion-MNIST; nothing was changed."
        return False
    spec = model_spec.preset(CHALLENGE_PRESET)
    config = recipes.budget_config(CHALLENGE_PRESET, choice.key, CHALLENGE_BUDGET_S, seed=state.train_config().seed)
    import_keras()  # on the script thread first: two threads importing at once can break imports
    previous = state.dataset_choice()
    state.use_dataset(choice)
    try:
        resources.start_run(spec, dataset, config)
    except Refused as error:
        state.use_dataset(previous)
        st.session_state[ERROR] = str(error)
        return False
    model_form.load_spec_into_widgets(spec)
    st.session_state["model_preset"] = CHALLENGE_PRESET
    training_view.use_config(config, CHALLENGE_PRESET)
    return True
