"""AppTest of every page: no exception, and what the page must show."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dcnn_core.training import job as training
from tests.helpers import app_engine, goto, plotly_figures, session_runs, shapes_zip, tighten_app_rules, wait_for_run

TIMEOUT = 60
APP = str(Path(__file__).resolve().parent.parent / "app.py")


def _offline_fashion(monkeypatch):
    """Make the default data set's download fail fast, as it does on an offline server."""
    monkeypatch.setenv("DCNN_OFFLINE", "1")  # refused at once, never downloaded (even where the server has internet)


@pytest.fixture
def app(monkeypatch):
    _offline_fashion(monkeypatch)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    return at


def test_home_page_shows_the_four_steps(app):
    assert app.title[0].value == "DCNN Studio"
    text = " ".join(md.value for md in app.markdown)
    assert "Why convolutions?" in [h.value for h in app.subheader]
    assert "0.876" in text


def test_offline_the_sidebar_names_the_stand_in_on_pages_that_load_no_data(monkeypatch):
    """A fresh session opened on the Leaderboard offline: the sidebar must not promise Fashion-MNIST."""
    _offline_fashion(monkeypatch)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page("pages/leaderboard.py")  # the first run of this session is that page (its sidebar is then in the tree)
    at.run()
    assert not at.exception and at.title[0].value == "Leaderboard"
    captions = [caption.value for caption in at.sidebar.caption]
    data_line = next((text for text in captions if text.startswith("**Data:**")), captions)
    assert "Shapes" in data_line and "Fashion" not in data_line, data_line


def test_data_page_falls_back_to_shapes_offline_and_shows_samples(app):
    goto(app, "data")
    warnings = [w.value for w in app.warning]
    assert any("Fashion-MNIST could not be downloaded" in w for w in warnings)
    assert app.selectbox(key="data_dataset").value == "shapes"
    figures = plotly_figures(app)
    grid = figures[0]
    assert sum(1 for trace in grid["data"] if trace["type"] == "image") == 12  # the article's 2×6
    assert "Classes: 6: circle, square, triangle, cross, star, ring" in [t.value for t in app.text]


def test_data_page_switches_to_digits_and_filters_by_class(app):
    goto(app, "data")
    app.selectbox(key="data_dataset").set_value("digits").run()
    app.selectbox(key="data_grid_class").set_value(3).run()
    assert not app.exception
    grid = plotly_figures(app)[0]
    titles = [a["text"] for a in grid["layout"]["annotations"]]
    assert titles == ["3"] * 12
    assert "Image shape: 8 × 8 × 1 (grayscale)" in [t.value for t in app.text]


def test_model_page_preset_and_slider_change_the_summary(app):
    goto(app, "model")
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
    goto(app, "data")
    app.selectbox(key="data_dataset").set_value("digits").run()
    goto(app, "model")
    app.selectbox(key="model_preset").set_value("LeNet-5").run()
    errors = [e.value for e in app.error]
    assert any("cannot be trained" in e and "block2_conv1" in e for e in errors)


def test_train_page_starts_shows_metrics_and_stops(app):
    goto(app, "train")
    app.slider(key="train_epochs").set_value(30).run()
    app.button(key="train_start").click().run()
    assert not app.exception
    job_id = app.session_state["selected_job"]
    assert job_id
    deadline = time.time() + 60
    progress = None
    while time.time() < deadline:
        app.run()
        progress = app_engine().progress(session_runs(app)[0].run_id)
        if progress.history["loss"]:
            break
        time.sleep(0.5)
    assert progress is not None and progress.history["loss"], "no metrics arrived"
    assert any(fig["data"] for fig in plotly_figures(app)), "no live curves drawn"
    app.button(key="train_stop").click().run()
    run = session_runs(app)[0]
    assert wait_for_run(run.run_id, 15)
    app.run()
    assert app_engine().run(run.run_id).status == training.STOPPED
    assert any("Stopped by you" in i.value for i in app.info)
    assert not app.exception


def test_predict_page_without_a_run_says_what_to_do(app):
    goto(app, "predict")
    assert any("Train a model first" in i.value for i in app.info)


def test_model_page_loads_a_design_from_json_and_refuses_a_bad_one(app):
    from dcnn_core.design import spec

    goto(app, "model")
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
    goto(app, "model")
    code = app.get("code")[0].value
    assert "def build_model():" in code and "layers.Conv2D(" in code
    figures = plotly_figures(app)
    assert any(len(fig["layout"].get("shapes", [])) >= 5 for fig in figures)  # the architecture diagram
    tables = [frame.value for frame in app.dataframe if "Design" in frame.value.columns]
    assert list(tables[0]["Design"]) == ["Article baseline", "Simple CNN"]


def test_own_images_become_the_data_set_of_every_page(app):
    goto(app, "data")
    app.selectbox(key="data_dataset").set_value("custom").run()
    assert any("Import a set above" in i.value for i in app.info)
    pets = shapes_zip(6, 24, True, seed=5, prefix="pets/", class_names=("circle", "square"))[0]
    app.get("file_uploader")[0].set_value(("pets.zip", pets, "application/zip")).run()
    app.button(key="data_custom_import_zip").click().run()
    assert not app.exception
    assert app.session_state["dataset_choice"].to_dict() == {"key": "custom", "options": {"name": "pets"}}
    assert "Classes: 2: circle, square" in [t.value for t in app.text]
    goto(app, "model")
    assert "Designing for **pets**: input 32 × 32 × 3, 2 classes" in " ".join(c.value for c in app.caption)


def test_a_new_tab_with_the_user_token_reattaches_to_a_running_job(app, monkeypatch):
    goto(app, "train")
    app.slider(key="train_epochs").set_value(40).run()
    app.button(key="train_start").click().run()
    owner = app.session_state["owner_id"]
    job = session_runs(app)[0]
    other_user = AppTest.from_file(APP, default_timeout=TIMEOUT)
    other_user.run()
    goto(other_user, "train")
    assert other_user.session_state["job_ids"] == []  # nobody else sees this user's run
    new_tab = AppTest.from_file(APP, default_timeout=TIMEOUT)
    new_tab.query_params["user"] = owner
    new_tab.run()
    goto(new_tab, "train")
    assert new_tab.session_state["job_ids"] == [job.run_id]
    assert new_tab.button(key="train_stop")  # the running job is shown, with its Stop button
    assert new_tab.button(key="train_start").disabled  # one training at a time per user, in any tab
    new_tab.button(key="train_stop").click().run()
    assert wait_for_run(job.run_id, 30) and app_engine().run(job.run_id).status == training.STOPPED


def test_reruns_leave_keras_global_state_alone(app):
    """Streamlit clears Keras's session after every run unless the app stops it: training threads share that state."""
    from dcnn_core.runtime import import_keras

    keras = import_keras()
    before = keras.backend.get_uid("dcnn_rerun_probe")
    app.run()
    goto(app, "model")
    assert keras.backend.get_uid("dcnn_rerun_probe") == before + 1  # a cleared session would restart the count at 1


def test_model_page_block_buttons_duplicate_move_and_remove(app):
    goto(app, "model")
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

    tighten_app_rules(monkeypatch, max_disk_mb_per_owner=1)
    goto(app, "train")
    app.slider(key="train_epochs").set_value(1).run()
    app.button(key="train_start").click().run()
    job = session_runs(app)[0]
    assert wait_for_run(job.run_id, 60) and app_engine().run(job.run_id).status == training.FINISHED
    assert resources.run_store().bytes_used([job.run_id]) > 2**20  # its saved model is over the 1 MB allowed
    app.run()
    app.button(key="train_start").click().run()
    assert not app.exception
    assert any("the most it keeps per person (1 MB)" in w.value for w in app.warning)
    assert [run.run_id for run in session_runs(app)] == [job.run_id]  # refused: no new run, the old one kept


def test_the_data_page_offers_the_cluttered_shapes(app):
    goto(app, "data")
    app.toggle(key="data_shapes_clutter").set_value(True).run()
    assert not app.exception
    assert app.session_state["dataset_choice"].options["clutter"] is True
    goto(app, "model")
    assert "cluttered" in " ".join(c.value for c in app.caption)


def test_a_reload_brings_back_the_runs_data_design_and_settings_and_a_new_run_joins_the_comparison(app):
    from dcnn_core.design import spec

    goto(app, "model")
    app.selectbox(key="model_preset").set_value("Article baseline").run()
    goto(app, "train")
    app.slider(key="train_epochs").set_value(1).run()
    app.button(key="train_start").click().run()
    first = session_runs(app)[0]
    assert wait_for_run(first.run_id, 60)
    app.run()
    goto(app, "model")
    app.selectbox(key="model_preset").set_value("Simple CNN").run()
    goto(app, "train")
    app.button(key="train_start").click().run()
    second = session_runs(app)[-1]
    assert wait_for_run(second.run_id, 60)
    app.run()
    assert app.multiselect(key="train_compare").value == [first.run_id, second.run_id]  # the new run joined, unasked
    assert app.selectbox(key="train_run_pick").value == second.run_id  # and the run picker shows it
    assert any(link.proto.label == "Try it on your photo" for link in app.get("page_link"))

    reloaded = AppTest.from_file(APP, default_timeout=TIMEOUT)  # the same address in a new tab, or after a reload
    reloaded.query_params["user"] = app.session_state["owner_id"]
    reloaded.query_params["run"] = first.run_id
    reloaded.run()
    assert reloaded.session_state["model_spec"].to_dict() == spec.preset("Article baseline").to_dict()
    assert reloaded.session_state["train_config"].epochs == 1
    assert reloaded.session_state["dataset_choice"].key == first.dataset_ref["key"]
    sidebar = " ".join(caption.value for caption in reloaded.sidebar.caption)
    assert "Article baseline" in sidebar and "at the last epoch" in sidebar


def test_every_word_a_newcomer_meets_on_model_and_train_has_a_help_text(app):
    goto(app, "model")
    labels = {"Filters", "Kernel size", "Stride", "Padding", "Pooling", "Dropout", "Conv layers", "Batch normalisation",
              "Feature maps → vector", "Dense layers"}  # fmt: skip
    widgets = [*app.slider, *app.select_slider, *app.selectbox, *app.toggle]
    missing = sorted({widget.label for widget in widgets if widget.label in labels and not widget.help})
    assert not missing, missing
    assert labels <= {widget.label for widget in widgets}  # every one of them is on the page
    goto(app, "train")
    widgets = [*app.slider, *app.select_slider, *app.selectbox]
    for label in ("Epochs", "Learning rate", "Batch size", "Optimizer"):
        widget = next(widget for widget in widgets if widget.label == label)
        assert widget.help and len(widget.help) > 40, label  # a sentence, not a word
