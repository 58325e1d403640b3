"""A newcomer's first minutes in a real browser, on a desktop window and on a phone: nothing jumps, nothing covers.

At 1366×800 and at 420×900 with a phone's user agent: the sidebar closes after a navigation on the
phone; Start stays where it was when pressed (the settings fold under it); the live chart's Plotly
toolbar never covers its titles; the finished message's "Try it on your photo" leads to the Predict
page with the upload box on the first screen; offline, ImageNet weights cannot be chosen.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ARTIFACTS, DEFAULT_TIMEOUT_MS, SCRIPT_STATE_WATCH
from tests.browser.test_workshop_flow import SLOW_MS, assert_no_exception, curve_points, eventually, press_on_slider, settle

pytestmark = pytest.mark.browser

PHONE_UA = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile "
            "Safari/537.36")  # fmt: skip
WINDOWS = {
    "desktop": {"viewport": {"width": 1366, "height": 800}},
    "phone": {"viewport": {"width": 420, "height": 900}, "user_agent": PHONE_UA, "is_mobile": True, "has_touch": True},
}
SIDEBAR_RIGHT_JS = "() => document.querySelector('[data-testid=stSidebar]').getBoundingClientRect().right"


@contextlib.contextmanager
def opened_in(chromium_browser, url: str, window: str) -> Iterator[Page]:
    """The app's home page in a fresh browser context the size (and, for the phone, the kind) of ``window``."""
    context = chromium_browser.new_context(**WINDOWS[window])
    context.add_init_script(SCRIPT_STATE_WATCH)
    page = context.new_page()
    page.set_default_timeout(DEFAULT_TIMEOUT_MS)
    page.goto(url + "/")
    settle(page)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(params=list(WINDOWS), scope="module")
def newcomer(request, chromium_browser, app_server) -> Iterator[tuple[str, Page]]:
    with opened_in(chromium_browser, app_server.url, request.param) as page:
        yield request.param, page


@pytest.fixture(autouse=True)
def evidence(request, newcomer):
    """A failed step leaves its screenshot in test-artifacts/browser/."""
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        newcomer[1].screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True, timeout=15_000)


def _navigate(page: Page, window: str, link: str, heading: str) -> None:
    """Go to a page through the sidebar, opening it first on a phone; it must not stay open over the new page."""
    if window == "phone":
        page.get_by_test_id("stExpandSidebarButton").click()
        eventually(lambda: page.evaluate(SIDEBAR_RIGHT_JS), lambda right: right > 100, 10, "the sidebar to open")
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=link, exact=True).click()
    expect(page.locator("h1").filter(has_text=re.compile(rf"^{heading}$"))).to_be_visible(timeout=SLOW_MS)
    settle(page)
    assert_no_exception(page)
    if window == "phone":
        eventually(lambda: page.evaluate(SIDEBAR_RIGHT_JS), lambda right: right <= 1, 10, "the sidebar to close over the new page")


def test_offline_imagenet_weights_cannot_be_chosen(newcomer):
    window, page = newcomer
    _navigate(page, window, "Model", "Model")
    page.get_by_text("Pretrained backbone", exact=True).click()
    settle(page)
    imagenet = page.get_by_role("radio", name=re.compile(r"ImageNet weights.*\(not available on this server\)"))
    expect(imagenet).to_be_disabled()
    page.get_by_text("Design from scratch", exact=True).click()
    settle(page)


def test_start_stays_put_the_chart_is_uncovered_and_the_photo_is_one_click_away(newcomer):
    window, page = newcomer
    _navigate(page, window, "Train", "Train")
    assert press_on_slider(page, "train_epochs", "Home") == "1"
    start = page.locator(".st-key-train_start").get_by_role("button", name="Start training")  # disabled, it has a tooltip twin
    start.scroll_into_view_if_needed()
    before = start.bounding_box()
    start.click()
    eventually(lambda: curve_points(page), lambda n: n > 0, SLOW_MS / 1000, "the first points of the live curves")
    after = start.bounding_box()
    assert abs(after["y"] - before["y"]) < 5, f"Start moved from y={before['y']:.0f} to y={after['y']:.0f}"

    chart = page.locator(".st-key-train_curves .js-plotly-plot")
    chart.hover()
    expect(page.locator(".st-key-train_curves .modebar-container .modebar")).to_have_count(0)  # no toolbar over the titles

    try_it = page.get_by_role("link", name="Try it on your photo")
    expect(try_it).to_be_visible(timeout=SLOW_MS)
    try_it.click()
    expect(page.locator("h1").filter(has_text=re.compile(r"^Predict$"))).to_be_visible(timeout=SLOW_MS)
    settle(page)
    assert_no_exception(page)
    upload = page.locator(".st-key-predict_upload")
    expect(upload).to_be_visible(timeout=SLOW_MS)
    expect(upload).to_be_in_viewport()  # trying it first: no scrolling to find the upload box
