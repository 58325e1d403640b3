"""AppTest of every page: no exception, and what the page must show."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dcnn_core import training

TIMEOUT = 60
APP = str(Path(__file__).resolve().parent.parent / "app.py")


def _offline_fashion(monkeypatch):
    """Make the default data set's download fail fast, as it does on an offline server."""
    import keras

    def offline():
        raise OSError("URL fetch failure: Name or service not known")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)


@pytest.fixture
def app(monkeypatch):
    _offline_fashion(monkeypatch)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    return at


def _goto(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _plotly(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_home_page_shows_the_four_steps(app):
    assert app.title[0].value == "DCNN Studio"
    text = " ".join(md.value for md in app.markdown)
    assert "Why convolutions?" in [h.value for h in app.subheader]
    assert "0.876" in text


def test_data_page_falls_back_to_shapes_offline_and_shows_samples(app):
    _goto(app, "data")
    warnings = [w.value for w in app.warning]
    assert any("Fashion-MNIST could not be downloaded" in w for w in warnings)
    assert app.selectbox(key="data_dataset").value == "shapes"
    figures = _plotly(app)
    grid = figures[0]
    assert sum(1 for trace in grid["data"] if trace["type"] == "image") == 12  # the article's 2×6
    assert "Classes: 6: circle, square, triangle, cross, star, ring" in [t.value for t in app.text]


def test_data_page_switches_to_digits_and_filters_by_class(app):
    _goto(app, "data")
    app.selectbox(key="data_dataset").set_value("digits").run()
    app.selectbox(key="data_grid_class").set_value(3).run()
    assert not app.exception
    grid = _plotly(app)[0]
    titles = [a["text"] for a in grid["layout"]["annotations"]]
    assert titles == ["3"] * 12
    assert "Image shape: 8 × 8 × 1 (grayscale)" in [t.value for t in app.text]


def test_model_page_preset_and_slider_change_the_summary(app):
    _goto(app, "model")
    app.selectbox(key="model_preset").set_value("Article baseline").run()
    params = app.metric[0].value
    assert params == f"{28 * 28 * 256 + 256 + 256 * 6 + 6:,}"  # Shapes has 6 classes
    app.selectbox(key="model_preset").set_value("Simple CNN").run()
    before = app.metric[0].value
    app.select_slider(key="model_b0_filters").set_value(64).run()
    assert not app.exception
    assert app.metric[0].value != before
    assert app.session_state["model_spec"].name == "Simple CNN (edited)"
    assert r"**Simple CNN \(edited\)** — layer by layer" in [md.value for md in app.markdown]  # shown as typed


def test_model_page_refuses_a_design_that_cannot_work(app):
    _goto(app, "data")
    app.selectbox(key="data_dataset").set_value("digits").run()
    _goto(app, "model")
    app.selectbox(key="model_preset").set_value("LeNet-5").run()
    errors = [e.value for e in app.error]
    assert any("cannot be trained" in e and "block2_conv1" in e for e in errors)


def test_train_page_starts_shows_metrics_and_stops(app):
    _goto(app, "train")
    app.slider(key="train_epochs").set_value(30).run()
    app.button(key="train_start").click().run()
    assert not app.exception
    job_id = app.session_state["selected_job"]
    assert job_id
    deadline = time.time() + 60
    progress = None
    while time.time() < deadline:
        app.run()
        registry_jobs = _session_jobs(app)
        progress = registry_jobs[0].snapshot()
        if progress.history["loss"]:
            break
        time.sleep(0.5)
    assert progress is not None and progress.history["loss"], "no metrics arrived"
    assert any(fig["data"] for fig in _plotly(app)), "no live curves drawn"
    app.button(key="train_stop").click().run()
    job = _session_jobs(app)[0]
    assert job.wait(15)
    app.run()
    assert job.status == training.STOPPED
    assert any("Stopped by you" in i.value for i in app.info)
    assert not app.exception


def _session_jobs(at: AppTest) -> list[training.TrainingJob]:
    from ui import resources

    registry = resources.job_registry()
    return [registry.get(job_id) for job_id in at.session_state["job_ids"]]


def test_predict_page_without_a_run_says_what_to_do(app):
    _goto(app, "predict")
    assert any("Train a model first" in i.value for i in app.info)


def test_model_page_loads_a_design_from_json_and_refuses_a_bad_one(app):
    from dcnn_core import spec

    _goto(app, "model")
    design = spec.preset("VGG-style mini")
    design.name = "My VGG"
    app.get("file_uploader")[0].set_value(("my_vgg.json", design.to_json().encode(), "application/json")).run()
    assert not app.exception
    assert app.session_state["model_block_count"] == 2
    assert app.session_state["model_b0_conv_layers"] == 2
    assert any("Loaded the design 'My VGG'" in s.value for s in app.success)
    app.get("file_uploader")[0].set_value(("broken.json", b'{"blocks": [{"filters": -3}]}', "application/json")).run()
    assert any(r"'broken\.json' is not a usable design" in e.value and "filters" in e.value for e in app.error)
    assert app.session_state["model_block_count"] == 2  # the design in hand is kept


def test_model_page_shows_code_diagram_and_comparison(app):
    _goto(app, "model")
    code = app.get("code")[0].value
    assert "def build_model():" in code and "layers.Conv2D(" in code
    figures = _plotly(app)
    assert any(len(fig["layout"].get("shapes", [])) >= 5 for fig in figures)  # the architecture diagram
    tables = [frame.value for frame in app.dataframe if "Design" in frame.value.columns]
    assert list(tables[0]["Design"]) == ["Article baseline", "Simple CNN"]


def _shapes_zip(per_class: int = 6) -> bytes:
    """A zip of class folders, as a user would make from their own pictures."""
    import io
    import zipfile

    from PIL import Image

    from dcnn_core.shapes import generate_shapes

    images, labels = generate_shapes(per_class, 24, colour=True, seed=5, class_names=("circle", "square"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
            png = io.BytesIO()
            Image.fromarray(pixels).save(png, format="PNG")
            archive.writestr(f"pets/{['circle', 'square'][label]}/{index}.png", png.getvalue())
    return buffer.getvalue()


def test_own_images_become_the_data_set_of_every_page(app):
    _goto(app, "data")
    app.selectbox(key="data_dataset").set_value("custom").run()
    assert any("Import a set above" in i.value for i in app.info)
    app.get("file_uploader")[0].set_value(("pets.zip", _shapes_zip(), "application/zip")).run()
    app.button(key="data_custom_import_zip").click().run()
    assert not app.exception
    assert app.session_state["dataset_choice"].to_dict() == {"key": "custom", "options": {"name": "pets"}}
    assert "Classes: 2: circle, square" in [t.value for t in app.text]
    _goto(app, "model")
    assert "Designing for **pets**: input 32 × 32 × 3, 2 classes" in " ".join(c.value for c in app.caption)


def test_a_new_tab_with_the_user_token_reattaches_to_a_running_job(app, monkeypatch):
    _goto(app, "train")
    app.slider(key="train_epochs").set_value(40).run()
    app.button(key="train_start").click().run()
    owner = app.session_state["owner_id"]
    job = _session_jobs(app)[0]
    other_user = AppTest.from_file(APP, default_timeout=TIMEOUT)
    other_user.run()
    _goto(other_user, "train")
    assert other_user.session_state["job_ids"] == []  # nobody else sees this user's run
    new_tab = AppTest.from_file(APP, default_timeout=TIMEOUT)
    new_tab.query_params["user"] = owner
    new_tab.run()
    _goto(new_tab, "train")
    assert new_tab.session_state["job_ids"] == [job.job_id]
    assert new_tab.button(key="train_stop")  # the running job is shown, with its Stop button
    assert new_tab.button(key="train_start").disabled  # one training at a time per user, in any tab
    new_tab.button(key="train_stop").click().run()
    assert job.wait(30) and job.status == training.STOPPED


def test_reruns_leave_keras_global_state_alone(app):
    """Streamlit clears Keras's session after every run unless the app stops it: training threads share that state."""
    from dcnn_core.runtime import import_keras

    keras = import_keras()
    before = keras.backend.get_uid("dcnn_rerun_probe")
    app.run()
    _goto(app, "model")
    assert keras.backend.get_uid("dcnn_rerun_probe") == before + 1  # a cleared session would restart the count at 1


def test_model_page_block_buttons_duplicate_move_and_remove(app):
    _goto(app, "model")
    app.selectbox(key="model_preset").set_value("Simple CNN").run()
    app.button(key="model_b0_duplicate").click().run()
    assert app.session_state["model_block_count"] == 4
    assert [app.session_state[f"model_b{i}_filters"] for i in range(4)] == [32, 32, 64, 128]
    app.button(key="model_b2_up").click().run()
    assert [app.session_state[f"model_b{i}_filters"] for i in range(4)] == [32, 64, 32, 128]
    app.button(key="model_b0_remove").click().run()
    assert not app.exception
    assert [app.session_state[f"model_b{i}_filters"] for i in range(3)] == [64, 32, 128]
    assert app.session_state["model_spec"].name == "Simple CNN (edited)"


def test_a_start_beyond_the_disk_a_person_may_use_is_refused_and_loses_nothing(app, monkeypatch):
    from ui import resources

    monkeypatch.setenv("DCNN_MAX_DISK_MB_PER_USER", "1")
    resources.settings.clear()
    try:
        _goto(app, "train")
        app.slider(key="train_epochs").set_value(1).run()
        app.button(key="train_start").click().run()
        job = _session_jobs(app)[0]
        assert job.wait(60) and job.status == training.FINISHED
        assert resources.run_store().bytes_used([job.job_id]) > 2**20  # its saved model is over the 1 MB allowed
        app.run()
        app.button(key="train_start").click().run()
        assert not app.exception
        assert any("the most it keeps per person (1 MB)" in w.value for w in app.warning)
        assert [j.job_id for j in _session_jobs(app)] == [job.job_id]  # refused: no new run, the old one kept
    finally:
        resources.settings.clear()


def test_the_data_page_offers_the_cluttered_shapes(app):
    _goto(app, "data")
    app.toggle(key="data_shapes_clutter").set_value(True).run()
    assert not app.exception
    assert app.session_state["dataset_choice"].options["clutter"] is True
    _goto(app, "model")
    assert "cluttered" in " ".join(c.value for c in app.caption)
