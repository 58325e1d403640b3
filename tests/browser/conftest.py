"""Browser fixtures: one Streamlit server, one headless Chromium, one page per test module.

The server runs ``app.py`` exactly as a workshop host would start it; the page is shared by the
ordered tests of a module so that the Streamlit session (and its training job) lives across them.
On a failure the test's screenshot and a copy of the server log land in ``test-artifacts/browser/``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
CHROMIUM = Path(os.environ.get("DCNN_CHROMIUM", "/usr/bin/chromium"))  # Debian's package; override for another install
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SERVER_START_TIMEOUT_S = 60
SERVER_STOP_TIMEOUT_S = 10
VIEWPORT = {"width": 1400, "height": 1000}
DEFAULT_TIMEOUT_MS = 30_000
# Records when Streamlit's script state last changed, so tests can wait for the app to stay idle.
SCRIPT_STATE_WATCH = """
window.__scriptStateChangedAt = performance.now();
new MutationObserver(() => { window.__scriptStateChangedAt = performance.now(); })
    .observe(document, {attributes: true, subtree: true, attributeFilter: ["data-test-script-state"]});
"""


if importlib.util.find_spec("playwright") is None:  # the browser tests import it at their top
    if os.environ.get("DCNN_REQUIRE_BROWSER") == "1":  # CI: a missing Playwright is a failure, never a skip
        raise ImportError("DCNN_REQUIRE_BROWSER=1 but the playwright package is not installed")
    collect_ignore_glob = ["test_*.py"]  # a user's machine without it leaves the browser tests out


def pytest_report_header(config) -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "browser tests left out: the playwright package is not installed (pip install -r requirements-dev.txt)"
    return None


def _browser_unavailable(reason: str) -> None:
    """Skip on a user's machine; fail in CI, where DCNN_REQUIRE_BROWSER=1 says the browser must be there."""
    if os.environ.get("DCNN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"DCNN_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


# --- the server -------------------------------------------------------------------------------


@dataclass
class AppServer:
    url: str
    log_path: Path
    process: subprocess.Popen


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def _wait_until_healthy(server: AppServer) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.process.returncode}; log:\n{_log_tail(server.log_path)}")
        try:
            with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=2) as response:
                if response.read().decode().strip() == "ok":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"streamlit was not healthy after {SERVER_START_TIMEOUT_S} s; log:\n{_log_tail(server.log_path)}")


def _stop(process: subprocess.Popen) -> None:
    """End the server's whole process group (it was started in a session of its own)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=SERVER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:  # a training thread can hold the interpreter up
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=SERVER_STOP_TIMEOUT_S)


@pytest.fixture(scope="session")
def app_server(tmp_path_factory) -> Iterator[AppServer]:
    """``streamlit run app.py`` on a free port, offline-safe, with its own empty runs folder.

    Two attendees' contexts make it a shared server, whose room limits would cut a run to 20 epochs:
    the workshop flow needs its 50-epoch run still training when it presses Stop.
    """
    yield from _serve(tmp_path_factory, "server.log", {"DCNN_ROOM_MAX_EPOCHS": "0"})


@pytest.fixture(scope="module")
def room_server(tmp_path_factory) -> Iterator[AppServer]:
    """A server of its own for a room of attendees: two compute slots, whatever the machine's cores."""
    yield from _serve(tmp_path_factory, "room-server.log", {"DCNN_MAX_CONCURRENT_JOBS": "2"})


def _serve(tmp_path_factory, log_name: str, extra_env: dict[str, str]) -> Iterator[AppServer]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = ARTIFACTS / log_name
    env = {
        **os.environ,
        "DCNN_TF_THREADS": "1",  # leave the other core to the web server and the browser
        "DCNN_RUNS_DIR": str(tmp_path_factory.mktemp("runs")),  # never read or write the repo's runs/
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
        # Offline on purpose: Fashion-MNIST, MNIST and CIFAR-10 are refused at once (Shapes stands in), so a
        # silently dropped connection can never stall CI on a download.
        "DCNN_OFFLINE": "1",
        **extra_env,
    }
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.headless", "true",
        "--server.address", "127.0.0.1",
        "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",  # edits made while the tests run must not rerun the app
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = AppServer(f"http://127.0.0.1:{port}", log_path, process)
    try:
        _wait_until_healthy(server)
        yield server
    finally:
        _stop(process)


# --- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_browser():
    """Debian's Chromium driven by Playwright (Playwright's own browsers cannot be downloaded here)."""
    if not CHROMIUM.exists():
        _browser_unavailable(f"{CHROMIUM} not found (apt-get install chromium, or set DCNN_CHROMIUM) — browser tests skipped")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _browser_unavailable("the playwright package is not installed — browser tests skipped")
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
    finally:
        playwright.stop()


@dataclass
class Session:
    """One attendee: a browser page on the app, plus what went wrong in it."""

    page: object
    server: AppServer
    page_errors: list[str] = field(default_factory=list)
    failed_step: str | None = None


@pytest.fixture(scope="module")
def attendee(chromium_browser, app_server) -> Iterator[Session]:
    """A fresh browser context on the app's home page, shared by the ordered tests of one module."""
    context = chromium_browser.new_context(viewport=VIEWPORT)
    context.add_init_script(SCRIPT_STATE_WATCH)
    page = context.new_page()
    page.set_default_timeout(DEFAULT_TIMEOUT_MS)
    session = Session(page, app_server)
    page.on("pageerror", lambda error: session.page_errors.append(str(error)))
    page.goto(app_server.url + "/")
    try:
        yield session
    finally:
        context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can see whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _save_artifacts(session: Session, name: str) -> list[Path]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    saved = []
    screenshot = ARTIFACTS / f"{name}.png"
    try:
        session.page.screenshot(path=str(screenshot), full_page=True, timeout=15_000)
        saved.append(screenshot)
    except Exception as error:  # the page may be the thing that broke
        print(f"could not take a screenshot: {error}")
    log_copy = ARTIFACTS / f"{name}.server.log"
    shutil.copyfile(session.server.log_path, log_copy)
    saved.append(log_copy)
    return saved


@pytest.fixture
def app_page(request, attendee: Session):
    """The shared page for one step of the flow; skips if an earlier step failed, saves evidence if this one does."""
    if attendee.failed_step:
        pytest.skip(f"an earlier step ({attendee.failed_step}) failed; the steps share one browser session")
    yield attendee.page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        attendee.failed_step = request.node.name
        for path in _save_artifacts(attendee, request.node.name):
            print(f"browser test artifact: {path}")
        if attendee.page_errors:
            print("JavaScript errors in the page:\n" + "\n".join(attendee.page_errors))
