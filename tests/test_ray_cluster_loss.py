"""The whole Ray cluster goes away under the app: runs end with a message, Start is refused within seconds, and
the web process lives on (Ray ends a driver that keeps a lost cluster after a minute), then joins it again."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time

import pytest

ray = pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-ray.txt")

from dcnn_core.design import spec  # noqa: E402
from dcnn_core.room.rules import Refused, RoomLimits, ServerRules  # noqa: E402
from dcnn_core.training.config import TrainConfig  # noqa: E402
from dcnn_core.training.description import RunDescription  # noqa: E402
from dcnn_core.training.engines import ray_engine  # noqa: E402
from dcnn_core.training.progress import Status  # noqa: E402
from dcnn_core.training.runs import RunStore  # noqa: E402
from tests.browser.conftest import _free_port  # noqa: E402
from tests.helpers import start_ray_head  # noqa: E402

SHAPES = {"key": "shapes", "options": {"count_per_class": 60, "image_size": 16, "colour": False, "seed": 1}}
LIMITS = RoomLimits(max_queue=None, max_runs_per_owner=None, max_disk_mb_per_owner=None)


def _description(owner: str, epochs: int) -> RunDescription:
    return RunDescription(spec.preset("Simple CNN"), TrainConfig(epochs=epochs, batch_size=16, seed=2), dict(SHAPES), owner=owner)


def test_the_cluster_gone_ends_its_runs_refuses_start_at_once_and_the_app_lives_on(tmp_path):
    port, temp_dir = _free_port(), tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths are limited
    head = start_ray_head(port, temp_dir)
    engine = ray_engine.RayEngine(RunStore(tmp_path), ServerRules(LIMITS), address=f"127.0.0.1:{port}", workers=1)
    try:
        run_id = engine.submit(_description("ann", epochs=500))  # far longer than this test
        deadline = time.monotonic() + 120
        while not engine.progress(run_id).batch_loss and time.monotonic() < deadline:
            time.sleep(0.5)
        assert engine.progress(run_id).batch_loss, "the run never trained"

        head.send_signal(signal.SIGTERM)  # the whole cluster goes away
        head.wait(60)
        deadline = time.monotonic() + 20
        while engine.progress(run_id).status != Status.FAILED and time.monotonic() < deadline:
            time.sleep(0.5)
        progress = engine.progress(run_id)
        assert progress.status == Status.FAILED and "cluster went away" in progress.message

        asked = time.monotonic()
        with pytest.raises(Refused, match="cannot be reached"):
            engine.submit(_description("bob", epochs=1))
        assert time.monotonic() - asked < 5 and engine.runs("bob") == []

        time.sleep(70)  # Ray would have ended this process by now had the engine kept hold of the lost cluster
        assert engine.progress(run_id).status == Status.FAILED  # still here, still answering

        head = start_ray_head(port, temp_dir)  # the organiser brings it back: the engine joins it again
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                again = engine.submit(_description("bob", epochs=1))
                break
            except Refused:
                time.sleep(2)
        else:
            pytest.fail("the engine did not join the cluster again")
        assert engine.wait(again, 120) and engine.progress(again).status == Status.FINISHED
    finally:
        engine.close()
        ray.shutdown()
        head.send_signal(signal.SIGTERM)
        head.wait(60)
        shutil.rmtree(temp_dir, ignore_errors=True)
