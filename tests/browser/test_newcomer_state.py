"""A newcomer's first runs in a real browser, on a desktop window and on a phone: a short path, honest progress, kept state.

At 1366×800 and at 420×900 with a phone's user agent, offline (Shapes stands in for Fashion-MNIST):
the walk from the address to a top-5 on an uploaded photo takes at most 8 clicks, each next control on the
screen without scrolling; the progress line never overshoots its batch count, names the same epoch as the
sidebar and estimates the time left; a newly finished run joins "Compare runs" and the run picker; a reload
keeps the data set and the design of the run on the page. On a server whose room caps the epochs, the
finished message says the room's limit ended the run, and the leaderboard table's toolbar covers nothing.

The tests of one window run in file order and share its page (and the Streamlit session behind it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.browser.conftest import ARTIFACTS, DEFAULT_TIMEOUT_MS, SCRIPT_STATE_WATCH, _serve
from tests.browser.test_newcomer_layout import WINDOWS, _navigate, opened_in
from tests.browser.test_workshop_flow import SLOW_MS, assert_no_exception, eventually, plot_traces, press_on_slider, settle, sidebar

pytestmark = pytest.mark.browser

MOST_CLICKS = 4  # from the address to a top-5 on your own photo: issue 26 asks at most 8; the walk takes 4 — keep it there
TRAINING_S = 240  # the default run (Simple CNN, 10 epochs of Shapes) takes ~20 s alone on 2 cores; a busy CI box, more
# Where a control is, and whether it is what a finger at its centre would press (nothing covers it).
ON_SCREEN_JS = """(element) => {
    const box = element.getBoundingClientRect();
    const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
    return {top: box.top, bottom: box.bottom, left: box.left, right: box.right, width: innerWidth, height: innerHeight,
            uncovered: !!hit && (hit === element || element.contains(hit))};
}"""
# The page's progress line and the sidebar's training line, read at the same instant (textContent: the phone's
# folded sidebar is off screen, not gone).
PROGRESS_JS = """() => [
    document.querySelector('.st-key-train_status')?.textContent ?? '',
    document.querySelector('[data-testid=stSidebar]')?.textContent ?? '',
]"""
PAGE_PROGRESS = re.compile(r"Epoch (\d+)/(\d+) · batch (\d+)/(\d+)")
SIDEBAR_EPOCH = re.compile(r"running — epoch (\d+)/(\d+)")


@dataclass
class Newcomer:
    """One window's person: the page, what the first run's progress showed, and whether a step failed."""

    window: str
    page: Page
    progress: list[tuple[str, str, float]] = field(default_factory=list)  # (page's line, sidebar's text, when) while it trained
    failed_step: str | None = None


@pytest.fixture(params=list(WINDOWS), scope="module")
def newcomer(request, chromium_browser, app_server) -> Iterator[Newcomer]:
    with opened_in(chromium_browser, app_server.url, request.param) as page:
        yield Newcomer(request.param, page)


@pytest.fixture
def person(request, newcomer: Newcomer) -> Iterator[Newcomer]:
    """The window's shared page for one step; skips after a failed step, and leaves a screenshot when this one fails."""
    if newcomer.failed_step:
        pytest.skip(f"an earlier step ({newcomer.failed_step}) failed; the steps of a window share one session")
    yield newcomer
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        newcomer.failed_step = request.node.name
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        newcomer.page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True, timeout=15_000)


def _snapshot(page: Page, name: str) -> None:
    """The screen as the person sees it (not the full page): evidence of each step of the walk."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), timeout=15_000)


def _expect_on_screen(page: Page, control: Locator, what: str) -> None:
    """``control`` lies inside the window as it is (no scrolling) and nothing covers its centre."""
    expect(control).to_be_visible(timeout=SLOW_MS)
    where = control.evaluate(ON_SCREEN_JS)
    inside = where["top"] >= 0 and where["left"] >= 0 and where["bottom"] <= where["height"] and where["right"] <= where["width"]
    assert inside, f"{what} is not on the first screen without scrolling: {where}"
    assert where["uncovered"], f"something covers {what}: {where}"


def _photo(folder: Path) -> Path:
    """A photo a person might try: a dark triangle drawn on a light, slightly noisy background."""
    image = Image.effect_noise((320, 240), 12).convert("RGB").point(lambda value: 150 + value // 3)
    ImageDraw.Draw(image).polygon([(160, 30), (270, 210), (50, 210)], fill=(30, 30, 40))
    path = folder / "my-triangle.png"
    image.save(path)
    return path


def _choose(page: Page, key: str, option: str) -> None:
    """Pick ``option`` in a selectbox, opening its list again if a rerun landing on the first click closed it."""
    box = page.locator(f".st-key-{key}").get_by_role("combobox")
    choice = page.get_by_role("option", name=option)
    for _ in range(3):
        box.click()
        try:
            choice.wait_for(timeout=5_000)
            break
        except PlaywrightTimeoutError:
            settle(page)
    choice.click()
    settle(page)
    assert_no_exception(page)
    expect(box, "the choice must survive the rerun it starts").to_have_value(re.compile(re.escape(option)))


def _open_training_settings(page: Page) -> None:
    """Unfold the Train page's settings (they fold once a run exists; a folded expander's widgets are not drawn)."""
    epochs = page.locator(".st-key-train_epochs").get_by_role("slider")
    if not epochs.is_visible():
        page.get_by_text(re.compile(r"^Training settings for")).click()
    expect(epochs).to_be_attached()


def _watch_progress(person: Newcomer, done: Locator, timeout_s: float) -> None:
    """Read the progress line and the sidebar a few times a second until ``done`` shows (waiting is no click)."""
    page, deadline = person.page, time.monotonic() + timeout_s
    while done.count() == 0:
        person.progress.append((*page.evaluate(PROGRESS_JS), time.monotonic()))
        assert time.monotonic() < deadline, f"the first run did not finish within {timeout_s:.0f} s; last seen: {person.progress[-1]}"
        page.wait_for_timeout(250)


# --- the walk, and what the first run showed ----------------------------------------------------


def test_the_walk_from_the_address_to_a_top5_on_a_photo_takes_4_clicks(person: Newcomer, tmp_path: Path):
    page, window = person.page, person.window
    clicks = []

    def click(control: Locator, what: str) -> None:
        _expect_on_screen(page, control, what)
        _snapshot(page, f"newcomer_walk_{window}_{len(clicks) + 1}")
        control.click()
        clicks.append(what)

    click(page.get_by_role("link", name="3 · Train"), "the Home page's '3 · Train'")
    expect(page.locator("h1").filter(has_text=re.compile(r"^Train$"))).to_be_visible(timeout=SLOW_MS)
    settle(page)
    assert_no_exception(page)

    click(page.locator(".st-key-train_start").get_by_role("button", name="Start training"), "Start training")
    try_it = page.get_by_role("link", name="Try it on your photo")
    _watch_progress(person, try_it, TRAINING_S)
    settle(page)
    assert_no_exception(page)

    click(try_it, "'Try it on your photo'")
    expect(page.locator("h1").filter(has_text=re.compile(r"^Predict$"))).to_be_visible(timeout=SLOW_MS)
    settle(page)
    assert_no_exception(page)
    expect(page.get_by_text(re.compile(r"This model knows 6 classes"))).to_be_visible()

    upload = page.locator(".st-key-predict_upload").get_by_role("button", name="Upload", exact=True)
    _expect_on_screen(page, upload, "the upload button")
    _snapshot(page, f"newcomer_walk_{window}_{len(clicks) + 1}")
    with page.expect_file_chooser() as chooser:  # choosing the file is part of this one click
        upload.click()
    chooser.value.set_files(_photo(tmp_path))
    clicks.append("the upload button (and the photo)")

    top_k = page.locator(".st-key-predict_topk_upload .js-plotly-plot")
    expect(top_k).to_be_visible(timeout=SLOW_MS)
    settle(page)
    assert_no_exception(page)
    prediction = page.get_by_text(re.compile(r"^Prediction: (circle|square|triangle|cross|star|ring) \(\d+\.\d%\)$"))
    expect(prediction.filter(visible=True)).to_have_count(1)  # the Upload tab's (the hidden test-image tab has one too)
    bars = [trace for trace in plot_traces(page, "predict_topk_upload") or [] if trace["type"] == "bar"]
    assert len(bars) == 1 and len(bars[0]["x"]) == 5, bars  # the top 5 of the 6 shapes
    _snapshot(page, f"newcomer_walk_{window}_top5")
    # The answer comes first, right under the upload box: on the first screen, no scrolling to find it.
    _expect_on_screen(page, prediction.filter(visible=True), "the prediction line")
    chart, height = top_k.bounding_box(), page.viewport_size["height"]
    shown = (min(chart["y"] + chart["height"], height) - max(chart["y"], 0)) / chart["height"]
    assert shown >= 0.75, f"only {shown:.0%} of the top-5 chart is on the first screen: {chart}"
    print(f"{window}: {len(clicks)} clicks from the address to a top-5: {'; '.join(clicks)}")
    assert len(clicks) <= MOST_CLICKS, clicks


def test_the_first_runs_progress_never_overshoots_and_agrees_with_the_sidebar(person: Newcomer):
    seen = [(PAGE_PROGRESS.search(line), SIDEBAR_EPOCH.search(side), when) for line, side, when in person.progress]
    lines = [match for match, _, _ in seen if match]
    assert len(lines) >= 5, f"too few progress lines were seen while the run trained: {person.progress[-3:]}"
    for match in lines:
        epoch, epochs, batch, batches = map(int, match.groups())
        assert 1 <= epoch <= epochs == 10, match.group(0)  # the default run: 10 epochs
        assert 0 <= batch <= batches, f"the batch counter overshoots: {match.group(0)}"

    assert any(re.search(r"about (\d+ s|\d+:\d\d) left", line) for line, _, _ in person.progress), (
        f"no time-left estimate appeared for a lone run: {sorted({line for line, _, _ in person.progress})}"
    )

    pairs = [(int(line.group(1)), int(side.group(1)), when) for line, side, when in seen if line and side]
    assert len(pairs) >= 5, f"too few moments showed both the page's and the sidebar's epoch: {person.progress[-3:]}"
    # Each part redraws itself every second, on its own clock: right after an epoch ends one may be a redraw behind
    # (and on a fast machine an epoch can take less than a redraw). Never more: what the sidebar says is what the page
    # said, or will say, within three seconds.
    for page_epoch, side_epoch, when in pairs:
        near = [other for other, _, then in pairs if abs(then - when) <= 3.0]
        assert min(near) <= side_epoch <= max(near), (
            f"the sidebar said epoch {side_epoch} while the page said {page_epoch} (and {sorted(set(near))} within 3 s)"
        )


# --- the second run: a comparison that grows, and a reload that keeps what was chosen ----------


def test_a_new_run_joins_the_comparison_and_the_run_picker(person: Newcomer):
    page, window = person.page, person.window
    _navigate(page, window, "Data", "Data")
    _choose(page, "data_dataset", "Handwritten digits")
    _navigate(page, window, "Model", "Model")
    _choose(page, "model_preset", "Article baseline")
    _navigate(page, window, "Train", "Train")
    expect(page.get_by_text(re.compile(r"^Training settings for Article baseline on Handwritten digits"))).to_be_visible()
    compared = page.locator(".st-key-train_compare [data-tag]")  # the chosen runs, one tag each
    expect(compared).to_have_count(1)  # the first run, the only one trained so far
    expect(compared.first).to_contain_text("1 · Simple CNN")

    _open_training_settings(page)
    assert press_on_slider(page, "train_epochs", "Home") == "1"
    page.locator(".st-key-train_start").get_by_role("button", name="Start training").click()
    # The first run's "Finished 10 epochs." may still be drawn for a moment: wait for this run's own words.
    finished = page.get_by_test_id("stAlertContentSuccess").locator("p", has_text=re.compile(r"^Finished 1 epoch\.$"))
    expect(finished).to_be_visible(timeout=SLOW_MS)  # one epoch, not "1 epochs"
    settle(page)
    assert_no_exception(page)

    # Still on the same page, untouched: the new run has joined the comparison and the picker shows it.
    expect(compared).to_have_count(2)
    expect(compared.nth(0)).to_contain_text("1 · Simple CNN")
    expect(compared.nth(1)).to_contain_text("2 · Article baseline · Handwritten digits")
    eventually(
        lambda: plot_traces(page, "train_compare_accuracy") or [],  # one line per run; the new one has 1 epoch
        lambda curves: len(curves) == 2 and len(curves[1]["y"]) == 1,
        SLOW_MS / 1000,
        "two runs in the comparison",
    )
    picker = page.locator(".st-key-train_run_pick").get_by_role("combobox")
    expect(picker).to_have_value(re.compile(r"^2 · Article baseline · Handwritten digits"))
    page.locator(".st-key-train_compare").scroll_into_view_if_needed()
    _snapshot(page, f"newcomer_compare_{window}")


def test_a_reload_keeps_the_data_set_the_design_and_the_settings(person: Newcomer):
    page = person.page
    assert re.search(r"[?&]user=[0-9a-f]{32}", page.url) and re.search(r"[?&]run=[0-9a-f]+", page.url), page.url
    page.reload()
    expect(page.locator("h1").filter(has_text=re.compile(r"^Train$"))).to_be_visible(timeout=SLOW_MS)
    settle(page)
    assert_no_exception(page)

    status = sidebar(page)
    expect(status).to_contain_text(re.compile(r"Data:\s*Handwritten digits"))
    expect(status).to_contain_text(re.compile(r"Model:\s*Article baseline"))
    expect(status).not_to_contain_text("Shapes")
    expect(page.get_by_text(re.compile(r"^Training settings for Article baseline on Handwritten digits"))).to_be_visible()
    _open_training_settings(page)
    expect(page.locator(".st-key-train_epochs").get_by_role("slider")).to_have_value("1")  # the settings of that run too
    _snapshot(page, f"newcomer_reloaded_{person.window}")


# --- a room that caps the epochs, and its leaderboard ---------------------------------------------

ROOM_EPOCHS = 2  # the room's limit per run on this server; the run asks for one more
# The table's hover toolbar and every element with text that its box overlaps (other than the table itself).
TOOLBAR_OVERLAPS_JS = """(table) => {
    const toolbar = table.querySelector('[data-testid=stElementToolbar]');
    const box = toolbar.getBoundingClientRect();
    const own = table.closest('[data-testid=stElementContainer]');
    const overlapping = [...document.querySelectorAll('[data-testid=stMain] [data-testid=stElementContainer]')]
        .filter((element) => element !== own && element.textContent.trim())
        .filter((element) => {
            const other = element.getBoundingClientRect();
            return other.width > 0 && other.height > 0 && other.left < box.right - 1 && box.left < other.right - 1
                && other.top < box.bottom - 1 && box.top < other.bottom - 1;
        })
        .map((element) => element.textContent.trim().slice(0, 60));
    return {toolbar: [box.top, box.bottom], table: table.getBoundingClientRect().top, overlapping};
}"""


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory):
    """A server of its own whose room allows 2 epochs per run (its leaderboard holds only this test's entries)."""
    yield from _serve(tmp_path_factory, "newcomer-capped-server.log", {"DCNN_ROOM_MAX_EPOCHS": str(ROOM_EPOCHS)})


@pytest.mark.parametrize("window", list(WINDOWS))
def test_a_run_cut_by_the_room_says_so_and_the_leaderboard_toolbar_covers_nothing(window, chromium_browser, capped_server):
    contexts = [chromium_browser.new_context(**WINDOWS[window]) for _ in range(2)]
    for context in contexts:
        context.add_init_script(SCRIPT_STATE_WATCH)
    other, page = (context.new_page() for context in contexts)
    try:
        for visitor in (other, page):  # two people on the server: the room's limits apply to new runs
            visitor.set_default_timeout(DEFAULT_TIMEOUT_MS)
            visitor.goto(capped_server.url + "/")
            settle(visitor)
        _run_cut_by_the_room(page, window)
        _publish_and_hover_the_board(page, window)
    except Exception:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"newcomer_capped_{window}.png"), full_page=True, timeout=15_000)
        raise
    finally:
        for context in contexts:
            context.close()


def _run_cut_by_the_room(page: Page, window: str) -> None:
    _navigate(page, window, "Train", "Train")
    assert press_on_slider(page, "train_epochs", "Home") == "1"
    assert press_on_slider(page, "train_epochs", "ArrowRight") == "2"
    assert press_on_slider(page, "train_epochs", "ArrowRight") == str(ROOM_EPOCHS + 1)
    expect(page.get_by_text(re.compile(rf"This server is shared with the room: .*at most {ROOM_EPOCHS} epochs"))).to_be_visible()
    page.locator(".st-key-train_start").get_by_role("button", name="Start training").click()
    words = f"Finished {ROOM_EPOCHS} epochs. The room's limit is {ROOM_EPOCHS} epochs per run (shared server); Continue trains more."
    finished = page.get_by_test_id("stAlertContentSuccess").locator("p", has_text=re.compile("^" + re.escape(words) + "$"))
    expect(finished).to_be_visible(timeout=SLOW_MS)
    settle(page)
    assert_no_exception(page)


def _publish_and_hover_the_board(page: Page, window: str) -> None:
    name = page.locator(".st-key-train_publish_name input")
    name.fill(f"Newcomer on a {window}")
    name.press("Enter")
    settle(page)
    page.locator(".st-key-train_publish").get_by_role("button").click()
    expect(page.get_by_test_id("stAlertContentSuccess").filter(has_text="Published as")).to_be_visible()
    settle(page)
    _navigate(page, window, "Leaderboard", "Leaderboard")
    table = page.get_by_test_id("stDataFrame").first
    table.scroll_into_view_if_needed()
    table.hover()
    toolbar = table.get_by_test_id("stElementToolbar")
    expect(toolbar).to_be_visible()
    page.wait_for_timeout(500)  # the toolbar fades in
    where = table.evaluate(TOOLBAR_OVERLAPS_JS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"newcomer_board_{window}.png"), timeout=15_000)
    assert where["toolbar"][1] <= where["table"] + 1, f"the table's toolbar reaches into its column headers: {where}"
    assert not where["overlapping"], f"the table's toolbar covers other text on the page: {where}"
