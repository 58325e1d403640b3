"""What a user sees and gets on the pages, asserted by values: runs that come back, compare, delete,
continue, previews, the Data page's charts, and the click callbacks of the confusion matrix and the Draw grid.

Each test starts a fresh "server": its own runs folder and empty process-wide caches (registry, run store).
"""

from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

from dcnn_core.data import datasets
from dcnn_core.design import spec
from dcnn_core.results import plots
from dcnn_core.results.evaluation import predict_probabilities
from dcnn_core.training import job as training
from dcnn_core.training import runs
from dcnn_core.training.config import Augmentation, TrainConfig
from tests.helpers import train_in_app

TIMEOUT = 60
APP = str(Path(__file__).resolve().parent.parent / "app.py")
OWNER = "0123456789abcdef0123456789abcdef"
TINY_SHAPES = {"key": "shapes", "options": {"count_per_class": 30, "image_size": 16, "seed": 1}}  # = conftest's tiny_shapes


def _clear_server_caches() -> None:
    """What a server restart forgets: every st.cache_resource of ui/resources.py."""
    from ui import resources

    for cached in (resources.settings, resources.run_store, resources.engine, resources._failed_loads):
        cached.clear()


@pytest.fixture
def server(monkeypatch, tmp_path) -> Path:
    """A fresh server process, offline on purpose, saving runs under ``tmp_path``; returns the runs folder."""
    runs_dir = tmp_path / "runs"
    monkeypatch.setenv("DCNN_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("DCNN_OFFLINE", "1")
    _clear_server_caches()
    yield runs_dir
    from ui import resources

    for job in resources.engine().registry.jobs():
        job.request_stop()
        job.wait(30)
    _clear_server_caches()


def _finished_run(dataset: datasets.Dataset, epochs: int = 1, seed: int = 3, owner: str = OWNER) -> training.TrainingJob:
    """A run trained through the app's engine and saved in its runs folder, as the Start button does."""
    from ui import resources

    config = TrainConfig(epochs=epochs, batch_size=16, seed=seed)
    run = train_in_app(spec.preset("Simple CNN"), config, {**TINY_SHAPES, "title": dataset.title}, owner)
    assert run.status == training.FINISHED, run.message
    return resources.trained(run.run_id)


def _open(page: str, owner: str = OWNER, choice: dict = TINY_SHAPES, selected: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["owner_id"] = owner
    at.session_state["dataset_choice"] = dict(choice)
    if selected:
        at.session_state["selected_job"] = selected
    at.run()
    at.switch_page(f"pages/{page}.py")
    at.run()
    _ok(at)
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _chart(at: AppTest, key: str) -> dict:
    matches = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart") if chart.proto.id.endswith(key)]
    assert matches, f"no chart {key!r}"
    return matches[0]


def _values(array) -> np.ndarray:
    """A figure's array: a list, or Plotly's typed-array form {"dtype", "bdata", "shape"?}."""
    if not isinstance(array, dict):
        return np.asarray(array)
    return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])


def _image(trace: dict) -> np.ndarray:
    """The pixels of a go.Image trace drawn from a PNG data URI."""
    encoded = trace["source"].split(",", 1)[1]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(encoded))))


def _same_predictions(a, b, images) -> bool:
    return np.allclose(predict_probabilities(a, images), predict_probabilities(b, images), atol=1e-5)


# --- runs come back ---------------------------------------------------------------------------


def test_runs_come_back_after_a_server_restart(server, tiny_shapes):
    from ui import resources

    job = _finished_run(tiny_shapes)
    assert (server / job.job_id / "run.json").is_file()
    _clear_server_caches()  # the restart: the registry is empty, only the runs folder remains
    assert resources.engine().registry.get(job.job_id) is None

    stranger = _open("train", owner="fedcba9876543210fedcba9876543210")
    assert stranger.session_state["job_ids"] == []  # nobody else gets this user's run
    at = _open("train")
    assert at.session_state["job_ids"] == [job.job_id]
    restored = resources.engine().registry.get(job.job_id)
    assert restored is not job and restored.status == training.FINISHED
    assert restored.snapshot().history["val_loss"] == pytest.approx(job.snapshot().history["val_loss"])
    assert _same_predictions(restored.model, job.model, tiny_shapes.x_test[:8])
    table = [frame.value for frame in at.dataframe if "Test accuracy" in frame.value.columns][0]
    assert table["Test accuracy"].tolist() == pytest.approx([job.snapshot().test_accuracy])


def test_an_evicted_run_comes_back_when_its_user_returns(server, tiny_shapes):
    from ui import resources

    at = _open("train")  # the user's tab is open before the run exists (the server's saved runs are read then)
    assert at.session_state["job_ids"] == []
    job = _finished_run(tiny_shapes)
    registry = resources.engine().registry
    later = time.time() + resources.settings().idle_stop_s + 1
    assert registry.evict_idle(now=later) == [job]  # the app's own on_evict: saved, so it may leave memory
    assert registry.get(job.job_id) is None

    at.run()  # the user looks again
    _ok(at)
    assert at.session_state["job_ids"] == [job.job_id]
    restored = registry.get(job.job_id)
    assert restored is not None and restored is not job and restored.status == training.FINISHED
    assert _same_predictions(restored.model, job.model, tiny_shapes.x_test[:8])


def test_the_registry_takes_its_cap_from_the_environment(server, monkeypatch):
    from ui import resources

    monkeypatch.setenv("DCNN_MAX_CONCURRENT_JOBS", "3")
    _clear_server_caches()
    assert resources.engine().registry.scheduler.slots == 3


# --- compare, delete, continue ----------------------------------------------------------------


def test_runs_are_compared_and_one_is_deleted(server, tiny_shapes):
    first, second = _finished_run(tiny_shapes, epochs=2, seed=3), _finished_run(tiny_shapes, epochs=1, seed=4)
    at = _open("train")
    assert at.session_state["job_ids"] == [first.job_id, second.job_id]
    assert at.multiselect(key="train_compare").value == [first.job_id, second.job_id]
    curves = _chart(at, "train_compare_accuracy")["data"]
    assert [trace["name"] for trace in curves] == [f"1 · Simple CNN · {tiny_shapes.title}", f"2 · Simple CNN · {tiny_shapes.title}"]
    for trace, job in zip(curves, (first, second), strict=True):
        assert _values(trace["y"]).tolist() == pytest.approx(job.snapshot().history["val_accuracy"])
    losses = _chart(at, "train_compare_loss")["data"]
    assert _values(losses[0]["y"]).tolist() == pytest.approx(first.snapshot().history["val_loss"])
    table = [frame.value for frame in at.dataframe if "Epochs" in frame.value.columns][0]
    assert table["Epochs"].tolist() == [2, 1]

    at.selectbox(key="train_run_pick").set_value(first.job_id).run()
    at.button(key="train_delete_run").click().run()
    _ok(at)
    assert at.session_state["job_ids"] == [second.job_id]
    from ui import resources

    assert resources.engine().registry.get(first.job_id) is None
    assert not (server / first.job_id).exists() and (server / second.job_id).is_dir()
    assert [trace["name"] for trace in _chart(at, "train_compare_accuracy")["data"]] == [f"1 · Simple CNN · {tiny_shapes.title}"]


def test_continue_trains_more_epochs_from_the_kept_weights(server, tiny_shapes):
    job = _finished_run(tiny_shapes, epochs=1)
    weights_before = [w.copy() for w in job.model.get_weights()]
    at = _open("train", selected=job.job_id)
    assert any("Finished 1 epoch" in s.value for s in at.success)
    at.number_input(key="train_continue_epochs").set_value(2).run()
    at.button(key="train_continue").click().run()
    _ok(at)
    assert job.wait(120), job.snapshot().message
    at.run()
    _ok(at)
    progress = job.snapshot()
    assert progress.status == training.FINISHED and progress.epoch == 3 and len(progress.history["loss"]) == 3
    assert any("Finished 3 epochs." in s.value for s in at.success)
    assert any(not np.allclose(a, b) for a, b in zip(weights_before, job.model.get_weights(), strict=True))
    assert len(runs.RunStore(server).load(server / job.job_id).history["loss"]) == 3  # saved again, continued


# --- previews ----------------------------------------------------------------------------------


def test_the_schedule_preview_shows_the_rate_of_every_epoch(server):
    at = _open("train")
    at.slider(key="train_epochs").set_value(4).run()
    at.select_slider(key="train_learning_rate").set_value(0.01).run()
    at.selectbox(key="train_schedule").set_value("step").run()
    at.slider(key="train_step_every").set_value(2).run()
    at.select_slider(key="train_step_factor").set_value(0.5).run()
    _ok(at)
    preview = _chart(at, "train_schedule_preview")["data"][0]
    assert _values(preview["x"]).tolist() == [1, 2, 3, 4]
    assert _values(preview["y"]).tolist() == pytest.approx([0.01, 0.01, 0.005, 0.005])
    at.selectbox(key="train_schedule").set_value("cosine").run()
    cosine = _values(_chart(at, "train_schedule_preview")["data"][0]["y"]).tolist()
    assert cosine[0] == pytest.approx(0.01) and all(a > b for a, b in zip(cosine, cosine[1:], strict=False))


def test_the_augmentation_preview_shows_augmented_copies_of_the_first_images(server, tiny_shapes):
    from dcnn_core.training.pipeline import augment_preview

    at = _open("train")
    assert any("Switch on an augmentation" in c.value for c in at.caption)
    at.toggle(key="train_aug_flip").set_value(True).run()
    at.button(key="train_aug_preview").click().run()
    _ok(at)
    grid = _chart(at, "train_aug_grid")
    tiles = [_image(trace) for trace in grid["data"] if trace["type"] == "image"]
    assert len(tiles) == 20  # 4 images × 5 copies
    seed = at.session_state["train_config"].seed
    expected = augment_preview(tiny_shapes.x_train[:4], Augmentation(flip=True), copies=5, seed=seed)
    for tile, wanted in zip(tiles, expected, strict=True):
        assert np.array_equal(tile, wanted[..., 0])
    for index, tile in enumerate(tiles):  # a flip only mirrors: each copy is its original or the mirror image
        original = tiny_shapes.x_train[index // 5, ..., 0]
        assert np.array_equal(tile, original) or np.array_equal(tile, original[:, ::-1])
    titles = [a["text"] for a in grid["layout"]["annotations"]]
    assert titles[::5] == [tiny_shapes.class_names[label] for label in tiny_shapes.y_train[:4]]


# --- the Data page's charts ----------------------------------------------------------------------


def test_the_data_page_charts_show_the_class_balance_and_the_pixel_values(server, digits):
    at = _open("data")
    at.selectbox(key="data_dataset").set_value("digits").run()
    _ok(at)
    bars = _chart(at, "data_class_counts")["data"][0]
    assert list(bars["x"]) == list(digits.class_names)
    assert _values(bars["y"]).tolist() == np.bincount(digits.y_train, minlength=10).tolist()
    histogram = _chart(at, "data_pixel_histogram")["data"]
    assert len(histogram) == 1 and histogram[0]["name"] == "gray"
    counts = _values(histogram[0]["y"])
    assert counts.tolist() == np.bincount(digits.x_train[:2000].ravel(), minlength=256).tolist()
    assert counts.sum() == min(2000, len(digits.x_train)) * 8 * 8


# --- click callbacks (called as Streamlit calls them, with the widget's event in session state) -


@pytest.fixture
def bare_session_state():
    """Streamlit's session state outside a script run; the keys a test sets are removed afterwards."""
    before = set(st.session_state.keys())
    yield st.session_state
    for key in set(st.session_state.keys()) - before:
        del st.session_state[key]


def test_clicking_a_confusion_cell_picks_that_cell(bare_session_state, tiny_shapes):
    from ui import predict_view

    names = tiny_shapes.class_names
    confusion = np.arange(36).reshape(6, 6)
    markers = plots.clickable_confusion_heatmap(confusion, names).data[-1]
    # The marker the user clicks: on the row of true 'triangle' (2), the column of predicted 'ring' (5).
    clicked = [i for i, (x, y) in enumerate(zip(markers.x, markers.y, strict=True)) if (y, x) == (names[2], names[5])]
    assert len(clicked) == 1 and markers.customdata[clicked[0]] == confusion[2, 5]
    bare_session_state["predict_confusion"] = {"selection": {"points": [{"point_index": clicked[0]}]}}
    predict_view._pick_cell(6)
    assert (bare_session_state["predict_cell_true"], bare_session_state["predict_cell_predicted"]) == (2, 5)
    for event in ({"selection": {"points": []}}, {"selection": {"points": [{"point_index": 36}]}}, None):
        bare_session_state["predict_confusion"] = event  # a cleared selection or a stray index changes nothing
        predict_view._pick_cell(6)
        assert (bare_session_state["predict_cell_true"], bare_session_state["predict_cell_predicted"]) == (2, 5)


def test_painting_the_draw_grid_inks_and_erases_the_selected_cells(bare_session_state):
    from ui import draw_view

    side = 16
    figure = draw_view._grid_figure(np.zeros((side, side), bool))
    xs, ys = figure.data[0].x, figure.data[0].y
    cells = [int(i) for i in np.flatnonzero((np.asarray(ys) == 3) & (np.asarray(xs) >= 5) & (np.asarray(xs) <= 9))]  # row 3, columns 5–9
    bare_session_state[draw_view.GRID_KEY] = {"selection": {"point_indices": [*cells, side * side + 4]}}
    draw_view._paint(side)
    ink = bare_session_state[draw_view.DRAW_INK]
    assert ink.shape == (side, side) and np.flatnonzero(ink).tolist() == [3 * side + col for col in range(5, 10)]
    assert list(draw_view._grid_figure(ink).data[0].marker.color).count("#ffffff") == 5  # shown painted

    bare_session_state["predict_draw_brush"] = "Eraser"
    bare_session_state[draw_view.GRID_KEY] = {"selection": {"point_indices": [cells[0]]}}
    draw_view._paint(side)
    assert np.flatnonzero(bare_session_state[draw_view.DRAW_INK]).tolist() == [3 * side + col for col in range(6, 10)]
    picture = np.asarray(draw_view.drawing_image(bare_session_state[draw_view.DRAW_INK], light_on_dark=True))
    assert picture[3 * 8 + 4, 7 * 8 + 4] > 150 and picture[3 * 8 + 4, 5 * 8 + 4] < 100  # ink where painted, none where erased


def test_a_failed_run_shows_one_sentence_and_no_traceback_or_server_path(server, monkeypatch):
    from dcnn_core.training import lifecycle

    def broken(*args, **kwargs):
        raise OSError(f"[Errno 13] Permission denied: '{server}/secret/model.keras'")

    monkeypatch.setattr(lifecycle, "build_and_compile", broken)
    run = train_in_app(spec.preset("Simple CNN"), TrainConfig(epochs=1, batch_size=16), TINY_SHAPES, OWNER)
    assert run.status == training.FAILED
    at = _open("train", selected=run.run_id)
    shown = " ".join(element.value for kind in ("error", "markdown", "code", "caption") for element in at.get(kind)
                     if isinstance(getattr(element, "value", None), str))  # fmt: skip
    assert "Training failed." in shown and "could not read or write a file" in shown
    assert str(server) not in shown and "Traceback" not in shown and "OSError" not in shown
