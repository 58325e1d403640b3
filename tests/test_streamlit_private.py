"""The app's few touches of Streamlit internals are active, and the public setting that replaced the others is set."""

import tomllib
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


def test_reruns_no_longer_clear_keras_global_state():
    from dcnn_core.runtime import import_keras
    from ui import streamlit_private

    keras = import_keras()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception
    assert streamlit_private.keeps_keras_session()
    before = keras.backend.get_uid("dcnn-studio-probe")
    at.run()  # Streamlit's clean-up after this run would reset Keras's uid counters (clear_session)
    assert keras.backend.get_uid("dcnn-studio-probe") == before + 1


def test_no_full_garbage_collection_after_every_run():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False
