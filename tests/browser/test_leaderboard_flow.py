"""Two attendees in two browsers: one publishes a run, the other sees it appear, loads that design and trains it.

Each attendee is a browser context of its own (its own Streamlit session and owner token), on the same
server, so what travels between them goes through the server's leaderboard file and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ARTIFACTS, DEFAULT_TIMEOUT_MS, SCRIPT_STATE_WATCH, VIEWPORT
from tests.browser.test_workshop_flow import SLOW_MS, assert_no_exception, choose, go_to, press_on_slider, settle, sidebar
from ui.leaderboard_view import REFRESH_S

pytestmark = pytest.mark.browser
NAME = "Ada <b>*room 1*</b>"  # Markdown and HTML in a name must show as typed
LAPTOP = {"width": 1366, "height": 900}  # a common workshop laptop: no button label may be cut at this width
NOT_CUT = "b => [...b.querySelectorAll('*')].every(e => e.scrollWidth <= e.clientWidth + 1)"


@pytest.fixture
def two_attendees(chromium_browser, app_server) -> Iterator[tuple[Page, Page]]:
    contexts, pages = [], []
    for _ in range(2):
        context = chromium_browser.new_context(viewport=VIEWPORT)
        context.add_init_script(SCRIPT_STATE_WATCH)
        page = context.new_page()
        page.set_default_timeout(DEFAULT_TIMEOUT_MS)
        page.goto(app_server.url + "/")
        contexts.append(context)
        pages.append(page)
    try:
        yield pages[0], pages[1]
    finally:
        for number, page in enumerate(pages, start=1):
            try:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / f"leaderboard_attendee{number}.png"), full_page=True, timeout=15_000)
            except Exception:  # noqa: BLE001 - evidence only
                pass
        for context in contexts:
            context.close()


def _train_one_epoch(page: Page) -> None:
    go_to(page, "Train", "Train")
    page.locator(".st-key-train_start button").click()
    expect(page.get_by_text(re.compile(r"^Finished \d+ epochs?"))).to_be_visible(timeout=SLOW_MS * 2)
    settle(page)
    assert_no_exception(page)


def test_one_attendee_publishes_and_another_loads_and_trains_that_design(two_attendees):
    author, learner = two_attendees
    expect(author.locator("h1").filter(has_text="DCNN Studio")).to_be_visible(timeout=SLOW_MS)
    settle(author)

    # The learner, in another browser on a laptop-sized window, already has the Leaderboard page open.
    learner.set_viewport_size(LAPTOP)
    expect(learner.locator("h1").filter(has_text="DCNN Studio")).to_be_visible(timeout=SLOW_MS)
    settle(learner)
    go_to(learner, "Leaderboard", "Leaderboard")
    expect(learner.locator("td").filter(has_text=NAME)).to_have_count(0)  # not published yet

    # The author: LeNet-5, one epoch, then publish under a display name.
    go_to(author, "Model", "Model")
    choose(author, "model_preset", "LeNet-5")
    go_to(author, "Train", "Train")
    assert press_on_slider(author, "train_epochs", "Home") == "1"
    _train_one_epoch(author)
    name_box = author.locator(".st-key-train_publish_name input")
    expect(name_box).to_be_visible(timeout=SLOW_MS)
    name_box.fill(NAME)
    name_box.press("Enter")
    settle(author)
    author.locator(".st-key-train_publish button").click()
    expect(author.get_by_test_id("stAlertContentSuccess").filter(has_text="Published as")).to_contain_text(NAME)
    settle(author)
    assert_no_exception(author)

    # The learner's open page shows it by itself (the board is read again every few seconds), then they load it,
    # find it on the Model and Train pages, and train it.
    table = learner.get_by_test_id("stDataFrame").first
    expect(table.locator("td").filter(has_text=NAME)).to_have_count(1, timeout=(REFRESH_S + 15) * 1000)
    settle(learner)
    expect(table.locator("td").filter(has_text="LeNet-5")).to_have_count(1)
    expect(learner.get_by_role("button", name=re.compile("Withdraw"))).to_have_count(0)  # not the learner's entry
    load = learner.get_by_role("button", name=re.compile("Load this design"))
    assert load.evaluate(NOT_CUT), "the label of 'Load this design' is cut at 1366 px"
    load.click()
    expect(learner.get_by_test_id("stAlertContentSuccess").filter(has_text="Loaded")).to_contain_text("LeNet-5")
    settle(learner)
    assert_no_exception(learner)
    expect(sidebar(learner)).to_contain_text("LeNet-5")

    go_to(learner, "Model", "Model")
    expect(learner.locator(".st-key-model_block_count").get_by_role("slider")).to_have_value("2")
    go_to(learner, "Train", "Train")
    expect(learner.locator(".st-key-train_epochs").get_by_role("slider")).to_have_value("1")  # the author's settings
    _train_one_epoch(learner)
    expect(sidebar(learner)).to_contain_text(re.compile(r"Training:\s*finished"))
    runs = learner.get_by_test_id("stDataFrame").filter(has=learner.locator("th", has_text="Best val. accuracy"))
    expect(runs.locator("td").filter(has_text=re.compile(r"^LeNet-5$"))).to_have_count(1)
