"""Optional sign-in, for real: Chromium, the app's own server with ``[auth]`` in its secrets, and an OpenID provider.

Nothing is faked: the provider (tests/oidc_provider.py) runs on loopback, Streamlit's ``st.login`` sends the
browser there, Authlib exchanges the code for an RS256-signed ID token and checks its signature, issuer,
audience and nonce, and the signed cookie it sets is what ``st.user`` reads. Each browser context is a
device with its own cookies: Ada signs in on two of them, Grace on a third, and the runs follow the account.
"""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ARTIFACTS, DEFAULT_TIMEOUT_MS, SCRIPT_STATE_WATCH, VIEWPORT, AppServer, _serve
from tests.browser.test_workshop_flow import SLOW_MS, assert_no_exception, go_to, press_on_slider, settle, sidebar, sidebar_nav
from tests.oidc_provider import OidcProvider

pytestmark = pytest.mark.browser

CLIENT_ID = "dcnn-studio-test"
ADA = {"sub": "ada-1815", "name": "Ada", "email": "ada@example.org"}
GRACE = {"sub": "grace-1906", "name": "Grace", "email": "grace@example.org"}
SIGN_IN = ".st-key-sign_in_default button"
SIGN_OUT = ".st-key-sign_out button"
RUN_PICK = ".st-key-train_run_pick"


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    with OidcProvider(CLIENT_ID, secrets.token_urlsafe(24)) as running:
        yield running


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory, provider: OidcProvider) -> Iterator[AppServer]:
    """The app with sign-in configured through a secrets file of its own (the repository's .streamlit/ stays untouched).

    ``{port}`` in redirect_uri is Streamlit's: it becomes the server's port, and the host must be the one the
    browser uses, since the sign-in cookie is only honoured for the redirect URI's origin.
    """
    secrets_file = tmp_path_factory.mktemp("secrets") / "secrets.toml"
    secrets_file.write_text(
        "[auth]\n"
        'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_hex(32)}"\n'
        f'client_id = "{provider.client_id}"\n'
        f'client_secret = "{provider.client_secret}"\n'
        f'server_metadata_url = "{provider.metadata_url}"\n'
    )
    yield from _serve(tmp_path_factory, "sign-in-server.log", {"STREAMLIT_SECRETS_FILES": str(secrets_file)})


@pytest.fixture
def devices(request, chromium_browser, auth_server: AppServer):
    """``open_device()`` gives a new browser context (its own cookies: another device) on the app's address."""
    contexts, pages = [], []

    def open_device() -> Page:
        context = chromium_browser.new_context(viewport=VIEWPORT)
        context.add_init_script(SCRIPT_STATE_WATCH)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(DEFAULT_TIMEOUT_MS)
        page.goto(auth_server.url + "/")
        pages.append(page)
        return page

    try:
        yield open_device
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:  # evidence: what each device saw, and the server's log
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for number, page in enumerate(pages, start=1):
                try:
                    page.screenshot(path=str(ARTIFACTS / f"sign-in-device-{number}.png"), full_page=True, timeout=10_000)
                except Exception:  # the page may be what broke
                    pass
            shutil.copyfile(auth_server.log_path, ARTIFACTS / "sign-in-flow.server.log")
        for context in contexts:
            context.close()


def expect_sign_in_screen(page: Page) -> None:
    """Only the sign-in screen: one button, no navigation, no page, and no owner token in the address."""
    expect(page.locator(SIGN_IN)).to_be_visible(timeout=SLOW_MS)
    settle(page)
    assert_no_exception(page)
    expect(page.get_by_test_id("stButton")).to_have_count(1)
    expect(sidebar_nav(page)).to_have_count(0)
    expect(page.locator("h1").filter(has_text=re.compile(r"^(Train|Data|Model)$"))).to_have_count(0)
    assert "user=" not in page.url, page.url


def sign_in(page: Page, provider: OidcProvider, person: dict) -> None:
    """Press Sign in; the provider signs ``person`` in and the browser comes back to the app, signed in."""
    expect_sign_in_screen(page)
    provider.next_user = dict(person)
    page.locator(SIGN_IN).click()
    expect(sidebar(page)).to_contain_text(f"Signed in as {person['name']}. Your runs belong to your account.", timeout=SLOW_MS)
    settle(page)
    assert_no_exception(page)
    assert provider.signed_in[-1] == person["sub"], provider.signed_in
    assert "user=" not in page.url, f"the address is no key once signed in: {page.url}"
    expect(sidebar_nav(page).get_by_role("link", name="Train", exact=True)).to_be_visible()


def test_runs_follow_the_signed_in_account_across_devices(devices, provider: OidcProvider):
    laptop = devices()
    sign_in(laptop, provider, ADA)
    go_to(laptop, "Train", "Train")
    assert press_on_slider(laptop, "train_epochs", "Home") == "1"  # short: the run only has to exist
    laptop.locator(".st-key-train_start button").click()
    expect(laptop.locator(RUN_PICK).get_by_role("combobox")).to_have_value(re.compile(r"^1 · Simple CNN · "), timeout=SLOW_MS)
    settle(laptop)
    assert_no_exception(laptop)
    assert "user=" not in laptop.url, laptop.url

    phone = devices()  # the same account on another device: the run is there, without any link
    sign_in(phone, provider, ADA)
    go_to(phone, "Train", "Train")
    expect(phone.locator(RUN_PICK).get_by_role("combobox")).to_have_value(re.compile(r"^1 · Simple CNN · "))
    expect(phone.get_by_role("heading", name="Your runs")).to_have_count(1)

    other = devices()  # another account on the same server sees none of Ada's runs
    sign_in(other, provider, GRACE)
    go_to(other, "Train", "Train")
    expect(other.get_by_text("Press Start training.")).to_be_visible()
    expect(other.locator(RUN_PICK)).to_have_count(0)
    expect(other.get_by_role("heading", name="Your runs")).to_have_count(0)

    laptop.locator(SIGN_OUT).click()  # back to the sign-in screen, and a reload stays signed out
    expect(laptop.locator(SIGN_IN)).to_be_visible(timeout=SLOW_MS)
    assert not [c for c in laptop.context.cookies() if c["name"].startswith("_streamlit_user")], laptop.context.cookies()
    laptop.reload()
    expect_sign_in_screen(laptop)
    expect(phone.locator(SIGN_OUT)).to_be_visible()  # signing out on one device leaves the others signed in
