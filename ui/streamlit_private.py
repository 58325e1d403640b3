"""The only place this app touches Streamlit's private internals — each with a reason, a warning if gone, and a test.

1. ``script_runner._clean_problem_modules``: after every script and fragment run Streamlit 1.67 calls
   ``keras.backend.clear_session()``. That resets Keras's global state for every thread — a training
   worker building a model included — and empties TensorFlow's kernel cache (a prediction right after
   a rerun took 21 ms instead of 8; training ran ~13 % slower with a Train page open). No public
   setting turns it off. We keep its other clean-up (closing matplotlib figures).
2. ``PagesManager.uses_pages_directory``: a ``pages/`` folder next to app.py turns on Streamlit's legacy
   pages-directory mode until ``st.navigation`` has run once in the process, so the first visitor of a
   fresh server who lands on ``/train`` would run that page without app.py. The guide keeps page
   scripts in ``pages/``; a page that finds no session state turns the mode off and reruns.

The full garbage collection after every run is switched off with the public ``runner.postScriptGC``
setting in ``.streamlit/config.toml`` instead (it cost ~0.3 s of interpreter lock per fragment run).
"""

from __future__ import annotations

import logging
import sys

import streamlit as st

_log = logging.getLogger(__name__)


def keep_keras_session() -> bool:
    """Stop Streamlit clearing Keras's session after every run; False (with a warning) if the private name is gone."""
    from streamlit.runtime.scriptrunner import script_runner

    current = getattr(script_runner, "_clean_problem_modules", None)
    if current is None:
        _log.warning("streamlit's script_runner._clean_problem_modules is gone: Keras's session may be cleared after every rerun")
        return False
    if getattr(current, "keeps_keras_session", False):
        return True

    def clean_problem_modules_but_keras() -> None:
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            pyplot.close("all")

    clean_problem_modules_but_keras.keeps_keras_session = True
    script_runner._clean_problem_modules = clean_problem_modules_but_keras
    return True


def keeps_keras_session() -> bool:
    from streamlit.runtime.scriptrunner import script_runner

    return getattr(getattr(script_runner, "_clean_problem_modules", None), "keeps_keras_session", False)


def leave_legacy_pages_mode() -> None:
    """Turn Streamlit's legacy ``pages/`` mode off and rerun through app.py (see the module's note)."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:
        _log.warning("streamlit.runtime.pages_manager.PagesManager is gone: a first visit straight to a page may skip app.py")
        return
    if not hasattr(PagesManager, "uses_pages_directory"):
        _log.warning("PagesManager.uses_pages_directory is gone: a first visit straight to a page may skip app.py")
        return
    PagesManager.uses_pages_directory = False
    st.rerun()
