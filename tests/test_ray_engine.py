"""The Ray engine against a real local Ray cluster (2 CPUs, started and stopped here): the engine contract.

Submit, live progress, stop in the middle of training, continue, a worker killed with SIGKILL (only its
runs end, the others go on), and a cluster that cannot be reached (Start refused within seconds).
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-ray.txt")

from dcnn_core.design import spec  # noqa: E402
from dcnn_core.room.rules import Refused, RoomLimits, ServerRules  # noqa: E402
from dcnn_core.training.config import TrainConfig  # noqa: E402
from dcnn_core.training.description import RunDescription  # noqa: E402
from dcnn_core.training.engines import ray_engine  # noqa: E402
from dcnn_core.training.progress import Status  # noqa: E402
from dcnn_core.training.runs import RunStore  # noqa: E402

SHAPES = {"key": "shapes", "options": {"count_per_class": 60, "image_size": 16, "colour": False, "seed": 1}}
LIMITS = RoomLimits(max_queue=None, max_runs_per_owner=None, max_disk_mb_per_owner=None)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """A Ray engine on a local cluster of 2 CPUs: two worker processes, each hosting its runs in turns."""
    store = RunStore(tmp_path_factory.mktemp("ray-runs"))
    engine = ray_engine.RayEngine(store, ServerRules(LIMITS, slots=2), address="local", workers=2, slice_s=0.5)
    yield engine
    engine.close()
    ray.shutdown()


def _description(owner: str, epochs: int, batch_size: int = 16, design: str = "Simple CNN") -> RunDescription:
    return RunDescription(spec.preset(design), TrainConfig(epochs=epochs, batch_size=batch_size, seed=2), dict(SHAPES), owner=owner)


def _wait_for(condition, timeout: float, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    return None


def test_a_run_trains_in_a_worker_process_and_its_curve_moves_here(engine):
    run_id = engine.submit(_description("ann", epochs=3))
    observed = engine.observe(run_id)
    assert observed.status in (Status.QUEUED, Status.RUNNING)
    moved = _wait_for(lambda: engine.progress(run_id).batch_loss, timeout=120)
    assert moved, "no batch point arrived from the worker"
    later = engine.observe(run_id, since=observed.cursor)
    assert later.change["batch_steps"] and not later.change["whole"]  # only what is new since the cursor
    assert engine.wait(run_id, 120)
    progress = engine.progress(run_id)
    assert progress.status == Status.FINISHED and progress.epoch == 3 and progress.test_accuracy is not None
    assert len(progress.history["val_loss"]) == 3
    assert (engine.store.root / run_id / "model.keras").is_file()  # saved by the worker, in the shared runs folder
    [info] = [run for run in engine.runs("ann") if run.run_id == run_id]
    assert info.can_continue and info.parameters and info.dataset_title
    trained = engine.trained(run_id)  # the model, loaded here from the runs folder, predicts
    probabilities = trained.model(trained.dataset.x_test[:4].astype(np.float32), training=False)
    assert np.allclose(np.sum(np.asarray(probabilities), axis=1), 1.0, atol=1e-4)


def test_training_happens_in_the_workers_not_in_this_process(engine):
    pids = {ray.get(worker.pid.remote()) for worker in engine.workers}
    assert len(pids) == 2 and os.getpid() not in pids


def test_stop_in_the_middle_of_training_and_continue(engine):
    run_id = engine.submit(_description("bob", epochs=40))
    assert _wait_for(lambda: engine.progress(run_id).batch_loss, timeout=120)
    asked = time.monotonic()
    assert engine.stop(run_id)
    assert engine.wait(run_id, 10), "Stop did not take effect"
    assert time.monotonic() - asked < 5
    stopped = engine.progress(run_id)
    assert stopped.status == Status.STOPPED and "Stopped by you" in stopped.message and stopped.epoch < 40
    assert _wait_for(lambda: engine.run(run_id).can_continue, timeout=10)

    engine.continue_run(run_id, 1)
    assert engine.wait(run_id, 120)
    continued = engine.progress(run_id)
    assert continued.status == Status.FINISHED and continued.epoch == stopped.epoch + 1


def test_one_training_per_person_and_the_rules_apply_on_the_cluster(engine):
    first = engine.submit(_description("cay", epochs=40))
    with pytest.raises(Refused, match="already have a training"):
        engine.submit(_description("cay", epochs=1))
    engine.stop(first)
    assert engine.wait(first, 30)


def test_a_killed_worker_ends_only_its_runs_and_the_rest_go_on(engine):
    runs = [engine.submit(_description(f"room-{i}", epochs=30)) for i in range(4)]  # two on each worker
    assert _wait_for(lambda: all(engine.progress(run).batch_loss for run in runs), timeout=180), "not every curve moved"
    victim = engine.registry.get(runs[0]).worker
    os.kill(ray.get(engine.workers[victim].pid.remote()), signal.SIGKILL)
    lost = [run for run in runs if engine.registry.get(run).worker == victim]
    assert _wait_for(lambda: all(engine.progress(run).status == Status.FAILED for run in lost), timeout=30)
    assert all("stopped unexpectedly" in engine.progress(run).message for run in lost)
    survivors = [run for run in runs if run not in lost]
    assert survivors and all(engine.progress(run).active for run in survivors)
    before = {run: engine.progress(run).version for run in survivors}
    assert _wait_for(lambda: all(engine.progress(run).version > before[run] for run in survivors), timeout=30)
    for run in survivors:
        engine.stop(run)
        assert engine.wait(run, 30)
    again = engine.submit(_description("room-0", epochs=1))  # the replaced worker takes new runs
    assert engine.wait(again, 120) and engine.progress(again).status == Status.FINISHED


def test_an_unreachable_cluster_refuses_start_within_seconds(tmp_path, monkeypatch):
    monkeypatch.setattr(ray_engine, "CONNECT_TIMEOUT_S", 3.0)
    gone = ray_engine.RayEngine(RunStore(tmp_path), ServerRules(LIMITS), address="127.0.0.1:1")
    try:
        started = time.monotonic()
        with pytest.raises(Refused, match="cannot be reached"):
            gone.submit(_description("dee", epochs=1))
        assert time.monotonic() - started < 10
        assert gone.runs("dee") == []  # nothing half-made
    finally:
        gone.close()
