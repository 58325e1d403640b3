"""In a real browser, the app trains on a real Ray cluster: the same Train page, the curve moves, Stop works.

A local cluster of 2 CPUs is started for this module (``ray start --head``) and the app is pointed at it
with ``DCNN_RAY_ADDRESS``; the web server itself then trains nothing.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Iterator

import pytest

pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-ray.txt")
from playwright.sync_api import Page, expect

from tests.browser.conftest import ARTIFACTS, DEFAULT_TIMEOUT_MS, SCRIPT_STATE_WATCH, VIEWPORT, AppServer, _free_port, _serve
from tests.browser.test_workshop_flow import SLOW_MS, assert_no_exception, curve_points, eventually, go_to, settle
from tests.helpers import start_ray_head

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A real local Ray cluster (a head node of 2 CPUs) for this module; its address."""
    port, temp_dir = _free_port(), tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths are limited
    head = start_ray_head(port, temp_dir, cpus=2)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)
        head.wait(60)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_app(tmp_path_factory, ray_cluster) -> Iterator[AppServer]:
    yield from _serve(tmp_path_factory, "ray-server.log", {"DCNN_RAY_ADDRESS": ray_cluster, "DCNN_ROOM_MAX_EPOCHS": "0"})


def test_a_training_on_the_ray_cluster_shows_its_live_curve_and_stops(chromium_browser, ray_app):
    context = chromium_browser.new_context(viewport=VIEWPORT)
    context.add_init_script(SCRIPT_STATE_WATCH)
    page: Page = context.new_page()
    page.set_default_timeout(DEFAULT_TIMEOUT_MS)
    try:
        page.goto(ray_app.url + "/")
        go_to(page, "Train", "Train")
        page.locator(".st-key-train_start").get_by_role("button").click()
        settle(page)
        assert_no_exception(page)
        first = eventually(lambda: curve_points(page), lambda points: points > 0, SLOW_MS / 1000, "the first points of the live curve")
        eventually(lambda: curve_points(page), lambda points: points > first, 60, "the live curve to move on")
        page.locator(".st-key-train_stop").get_by_role("button").click()
        expect(page.get_by_text("Stopped by you")).to_be_visible(timeout=30_000)
        assert_no_exception(page)
    except Exception:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "ray_flow.png"), full_page=True)
        raise
    finally:
        context.close()
    log = ray_app.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "cannot reach the cluster" not in log, log[-3000:]
