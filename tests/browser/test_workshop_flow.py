"""A workshop attendee's whole flow in a real browser, offline: Data → Model → Train → Predict.

The tests run in file order and share one page, so the Streamlit session — and the training job
it starts — lives from one step to the next. Pages are changed through the sidebar links, as a
person would; ``page.goto`` would start a new session and lose the job.
"""

from __future__ import annotations

import base64
import re
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sklearn.datasets
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

pytestmark = pytest.mark.browser

IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
RUNNING = '[data-testid="stApp"][data-test-script-state="running"]'
QUIET_MS = 500
# True when the app is idle and has been for quiet_ms (the time of the last change comes from
# SCRIPT_STATE_WATCH in conftest.py, installed in every page).
QUIET_JS = """(quietMs) => {
    const app = document.querySelector('[data-testid="stApp"]');
    return !!app && app.getAttribute("data-test-script-state") === "notRunning"
        && performance.now() - (window.__scriptStateChangedAt || 0) >= quietMs;
}"""
PAGES = [("Home", "DCNN Studio"), ("Data", "Data"), ("Model", "Model"), ("Train", "Train"), ("Predict", "Predict"),
         ("Leaderboard", "Leaderboard")]  # fmt: skip
PHOTO = Path(sklearn.datasets.__file__).parent / "images" / "china.jpg"
SLOW_MS = 90_000  # first TensorFlow import, first epoch, first evaluation: slow on a 2-core machine

# The figure of the newest (not stale) Plotly chart matching a CSS selector, as plain JSON.
PLOT_TRACES_JS = """(selector) => {
    const plots = Array.from(document.querySelectorAll(selector));
    const current = plots.filter((plot) => !plot.closest('[data-stale="true"]'));
    const plot = (current.length ? current : plots).at(-1);
    if (!plot || !plot.data) return null;
    // _fullData holds the decoded arrays: numpy arrays arrive packed ({dtype, bdata}) in plot.data
    return (plot._fullData || plot.data).map((trace) => ({
        type: trace.type || "scatter",
        x: trace.x ? Array.from(trace.x) : [],
        y: trace.y ? Array.from(trace.y) : [],
        source: trace.source || null,
    }));
}"""


# --- helpers ----------------------------------------------------------------------------------


def settle(page: Page, timeout_ms: int = SLOW_MS) -> None:
    """Wait until Streamlit has finished the rerun that the last action started, and any rerun it asked for.

    A script that calls ``st.rerun()`` leaves a short "notRunning" gap (a few hundred ms) before the next
    run, so one glimpse of the idle state is not enough: it must hold for QUIET_MS.
    """
    try:
        page.wait_for_selector(RUNNING, state="attached", timeout=1_000)
    except PlaywrightTimeoutError:
        pass  # the rerun ended before we looked, or the action started none
    page.wait_for_selector(IDLE, state="attached", timeout=timeout_ms)
    page.wait_for_function(QUIET_JS, arg=QUIET_MS, timeout=timeout_ms, polling=100)


def assert_no_exception(page: Page) -> None:
    exceptions = page.get_by_test_id("stException")
    assert exceptions.count() == 0, f"the page shows an exception: {exceptions.all_inner_texts()}"


def eventually(read: Callable[[], Any], accept: Callable[[Any], bool], timeout_s: float, what: str) -> Any:
    """Poll ``read()`` until ``accept`` likes its value; fail with the last value seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = read()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s} s for {what}; last value: {value!r}")
        time.sleep(0.5)


def sidebar_nav(page: Page):
    return page.get_by_test_id("stSidebarNav")


def go_to(page: Page, link: str, heading: str) -> None:
    """Click a sidebar navigation link and wait for that page to be drawn, without an exception."""
    target = sidebar_nav(page).get_by_role("link", name=link, exact=True)
    target.click()
    expect(target).to_have_attribute("aria-current", "page")
    expect(page.locator("h1").filter(has_text=re.compile(rf"^{re.escape(heading)}$"))).to_be_visible(timeout=SLOW_MS)
    settle(page)
    assert_no_exception(page)


def choose(page: Page, key: str, option: str) -> None:
    """Pick ``option`` in the selectbox with widget key ``key``."""
    box = page.locator(f".st-key-{key}").get_by_role("combobox")
    box.click()
    page.get_by_role("option", name=option).click()
    expect(box).to_have_value(re.compile(re.escape(option)))
    settle(page)
    assert_no_exception(page)
    expect(box, "the choice must survive the rerun it starts").to_have_value(re.compile(re.escape(option)))


def press_on_slider(page: Page, key: str, keyboard_key: str) -> str:
    """Focus the slider with widget key ``key``, press a key, return the value it shows."""
    slider = page.locator(f".st-key-{key}").get_by_role("slider")
    before = slider.input_value()
    slider.focus()
    slider.press(keyboard_key)
    expect(slider).not_to_have_value(before)
    settle(page)
    assert_no_exception(page)
    return slider.get_attribute("aria-valuetext") or slider.input_value()


def metric_value(page: Page, label: str):
    metric = page.get_by_test_id("stMetric").filter(has=page.get_by_test_id("stMetricLabel").filter(has_text=label)).first
    return metric.get_by_test_id("stMetricValue")


def plot_traces(page: Page, key: str) -> list[dict] | None:
    return page.evaluate(PLOT_TRACES_JS, f".st-key-{key} .js-plotly-plot")


def curve_points(page: Page) -> int:
    """How many x values the live training chart holds, over all its traces (0 before it appears)."""
    traces = plot_traces(page, "train_curves") or []
    return sum(len(trace["x"]) for trace in traces)


def png_size(data_uri: str) -> tuple[int, int]:
    """(width, height) read from the IHDR chunk of a base64 PNG data URI."""
    raw = base64.b64decode(data_uri.split(",", 1)[1])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG data URI"
    return struct.unpack(">II", raw[16:24])


def grid_image_sizes(page: Page) -> list[tuple[int, int]]:
    traces = plot_traces(page, "data_sample_grid") or []
    return [png_size(trace["source"]) for trace in traces if trace["type"] == "image" and trace["source"]]


def expect_sample_grid_of(page: Page, side: int) -> None:
    """The sample grid holds only side×side images, and Plotly has drawn every one of them."""
    sizes = eventually(lambda: grid_image_sizes(page), lambda s: bool(s) and set(s) == {(side, side)}, 30, f"{side}×{side} grid images")
    drawn = page.locator(".st-key-data_sample_grid image")
    eventually(drawn.count, lambda count: count == len(sizes), 30, f"{len(sizes)} <image> elements drawn by Plotly")


def sidebar(page: Page):
    return page.get_by_test_id("stSidebar")


# --- the flow ---------------------------------------------------------------------------------


def test_every_page_opens_without_an_exception(app_page: Page):
    page = app_page
    expect(page.locator("h1").filter(has_text="DCNN Studio")).to_be_visible(timeout=SLOW_MS)
    settle(page)
    assert_no_exception(page)
    expect(sidebar_nav(page).get_by_role("link")).to_have_count(len(PAGES))
    for link, heading in PAGES[1:] + PAGES[:1]:
        go_to(page, link, heading)


def test_data_page_shows_the_chosen_images(app_page: Page):
    page = app_page
    go_to(page, "Data", "Data")
    for option, side in (("Handwritten digits", 8), ("Shapes (generated)", 28)):
        choose(page, "data_dataset", option)
        expect_sample_grid_of(page, side)
    expect(sidebar(page)).to_contain_text("Shapes")


def test_model_page_reacts_to_presets_and_sliders(app_page: Page):
    page = app_page
    go_to(page, "Model", "Model")
    parameters = metric_value(page, "Parameters")

    choose(page, "model_preset", "Article baseline")
    expect(page.locator(".st-key-model_block_count").get_by_role("slider")).to_have_value("0")
    baseline = parameters.inner_text()

    choose(page, "model_preset", "Simple CNN")
    simple_cnn = eventually(parameters.inner_text, lambda v: v != baseline, 30, "a new parameter count for Simple CNN")

    filters_slider = page.locator(".st-key-model_b0_filters").get_by_role("slider")
    before = int(filters_slider.get_attribute("aria-valuetext"))
    after = int(press_on_slider(page, "model_b0_filters", "ArrowRight"))
    assert after > before, f"ArrowRight moved block 1's filters from {before} to {after}"
    edited = eventually(parameters.inner_text, lambda v: v != simple_cnn, 30, "the parameter count to follow the filters slider")
    assert int(edited.replace(",", "")) > int(simple_cnn.replace(",", "")), (simple_cnn, edited)

    summary = page.get_by_test_id("stDataFrame").filter(has=page.locator("th", has_text="Output shape")).first
    expect(summary.locator("td", has_text=f", {after})")).not_to_have_count(0)
    expect(sidebar(page)).to_contain_text("Simple CNN (edited)")


def test_training_is_live_survives_navigation_and_stops(app_page: Page):
    page = app_page
    go_to(page, "Train", "Train")
    assert press_on_slider(page, "train_epochs", "End") == "50"  # long enough to stop it half-way…
    assert press_on_slider(page, "train_batch_size", "Home") == "8"  # …on any machine: small batches, ~4× the steps

    page.locator(".st-key-train_start button").click()
    stop = page.locator(".st-key-train_stop button")
    expect(stop).to_be_visible(timeout=SLOW_MS)
    first = eventually(lambda: curve_points(page), lambda n: n > 0, SLOW_MS / 1000, "points on the training curves")
    page.wait_for_timeout(2_000)
    second = eventually(lambda: curve_points(page), lambda n: n > first, 30, f"the live curves to grow past {first} points")
    expect(sidebar(page)).to_contain_text(re.compile(r"Training:\s*running"))

    go_to(page, "Data", "Data")  # a page switch reruns the script; the job must not notice
    expect(sidebar(page)).to_contain_text(re.compile(r"Training:\s*running"))
    page.wait_for_timeout(2_000)
    go_to(page, "Train", "Train")
    expect(stop).to_be_visible()
    third = eventually(lambda: curve_points(page), lambda n: n > second, 30, f"the curves to keep growing past {second} points")

    assert re.search(r"[?&]run=[0-9a-f]+", page.url) and re.search(r"[?&]user=[0-9a-f]+", page.url)
    page.reload()  # a new browser session: the address alone must bring the running job back
    settle(page)
    expect(stop).to_be_visible(timeout=SLOW_MS)
    eventually(lambda: curve_points(page), lambda n: n > third, 30, f"the reattached curves to grow past {third} points")

    stop.click()
    outcome = page.get_by_text(re.compile(r"Stopped by you at epoch \d+"))
    expect(outcome).to_be_visible(timeout=30_000)
    expect(outcome).to_contain_text("The model trained so far is kept.")
    settle(page)
    assert_no_exception(page)
    expect(stop).to_have_count(0)
    expect(page.locator(".st-key-train_start button")).to_be_enabled()
    expect(sidebar(page)).to_contain_text(re.compile(r"Training:\s*stopped"))
    runs = page.get_by_test_id("stDataFrame").filter(has=page.locator("th", has_text="Best val. accuracy"))
    expect(runs.locator("td").filter(has_text=re.compile(r"^stopped$"))).to_have_count(1)
    expect(runs.locator("td").filter(has_text=re.compile(r"^Simple CNN \(edited\)$"))).to_have_count(1)


def test_predict_page_classifies_a_photo_and_rejects_junk(app_page: Page, tmp_path: Path):
    page = app_page
    go_to(page, "Predict", "Predict")
    expect(page.locator(".st-key-predict_run").get_by_role("combobox")).to_have_value(re.compile(r"Simple CNN \(edited\).*\(stopped\)"))
    accuracy = metric_value(page, "Test accuracy")
    expect(accuracy).to_be_visible(timeout=SLOW_MS)
    assert 0.0 <= float(accuracy.inner_text()) <= 1.0

    upload = page.locator(".st-key-predict_upload input[type=file]")
    upload.set_input_files(PHOTO)
    top_k = page.locator(".st-key-predict_topk_upload .js-plotly-plot")
    expect(top_k.last).to_be_visible(timeout=SLOW_MS)
    settle(page)
    assert_no_exception(page)
    bars = [trace for trace in plot_traces(page, "predict_topk_upload") or [] if trace["type"] == "bar"]
    assert len(bars) == 1, bars
    probabilities = bars[0]["x"]
    assert 1 <= len(probabilities) <= 5 and all(0.0 <= p <= 1.0 for p in probabilities), probabilities
    assert sum(probabilities) <= 1.0 + 1e-6, probabilities

    junk = tmp_path / "holiday-photo.png"  # the uploader's type filter trusts the name; the app must not
    junk.write_text("This is a text file, not a picture.\n")
    upload.set_input_files(junk)
    error = page.get_by_test_id("stAlertContentError").filter(has_text="not an image")
    expect(error).to_be_visible(timeout=30_000)
    expect(error).to_contain_text("holiday-photo.png")
    settle(page)
    assert_no_exception(page)
    expect(top_k).to_have_count(0)
    expect(accuracy).to_be_visible()
