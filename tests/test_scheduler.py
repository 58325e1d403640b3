"""Fair turns at the processor, and the room's limits: the scheduler with fake jobs, the registry with real ones."""

import threading
import time

import pytest

from dcnn_core.design import spec
from dcnn_core.room.rules import Refused, RoomLimits, ServerRules
from dcnn_core.training import job as training
from dcnn_core.training.description import RunDescription
from dcnn_core.training.engines.local import LocalEngine
from dcnn_core.training.progress import ProgressLog
from dcnn_core.training.runs import RunStore
from dcnn_core.training.scheduler import FairScheduler


def _worker(scheduler: FairScheduler, name: str, turns: int, log: list, stop: threading.Event | None = None):
    """A fake training: ``turns`` turns of computing, each ended when the scheduler says so."""
    if not scheduler.acquire(name, cancelled=(stop.is_set if stop else lambda: False), first=True):
        log.append((name, "cancelled"))
        return
    for turn in range(turns):
        log.append((name, turn))
        while not scheduler.turn_is_over(name):
            time.sleep(0.005)
            if turn == turns - 1:
                break
        scheduler.release(name)
        if turn < turns - 1 and not scheduler.acquire(name):
            return


def test_first_turns_go_in_the_order_of_start_and_nobody_starves():
    scheduler = FairScheduler(slots=1, slice_s=0.02)
    log: list = []
    holder = threading.Event()
    assert scheduler.acquire("early")  # someone computes while the room presses Start
    threads = []
    for name in ("a", "b", "c", "d"):
        thread = threading.Thread(target=_worker, args=(scheduler, name, 3, log))
        thread.start()
        threads.append(thread)
        time.sleep(0.05)  # pressed one after the other
    assert [scheduler.place(name) for name in "abcd"] == [1, 2, 3, 4]
    scheduler.release("early")
    holder.set()
    for thread in threads:
        thread.join(10)
    firsts = [name for name, turn in log if turn == 0]
    assert firsts == ["a", "b", "c", "d"]
    assert all(sum(1 for name, _ in log if name == who) == 3 for who in "abcd")  # every one had all its turns
    # Round robin: nobody has its third turn before everyone has had a first one.
    first_third = min(index for index, (_, turn) in enumerate(log) if turn == 2)
    assert first_third >= 4


def test_a_flood_of_new_runs_cannot_starve_a_run_in_progress():
    """A loop of Start and Stop from many tabs: each new run takes a first turn and is stopped; the run in progress still trains."""
    scheduler = FairScheduler(slots=1, slice_s=0.01)
    grants: list[str] = []
    done = threading.Event()

    def flood():
        for number in range(40):
            name = f"new-{number}"
            threading.Thread(target=lambda n=name: scheduler.acquire(n, first=True) and (grants.append(n), scheduler.release(n))).start()
            time.sleep(0.002)
        done.set()

    assert scheduler.acquire("runner", first=True)
    grants.append("runner")
    flooding = threading.Thread(target=flood)
    flooding.start()
    time.sleep(0.05)  # the line fills with new runs
    while not done.is_set() or scheduler.waiting_count():
        scheduler.release("runner")
        if not scheduler.acquire("runner"):
            break
        grants.append("runner")
        time.sleep(0.01)
    scheduler.release("runner")
    flooding.join(5)
    runner_turns = [index for index, name in enumerate(grants) if name == "runner"]
    gaps = [later - earlier - 1 for earlier, later in zip(runner_turns, runner_turns[1:], strict=False)]
    assert sum(name.startswith("new-") for name in grants) == 40  # every new run had its first turn too
    assert max(gaps) <= 2, gaps  # at most two first turns between two of the runner's


def test_a_waiting_job_can_be_cancelled_and_leaves_the_line():
    scheduler = FairScheduler(slots=1, slice_s=60)
    assert scheduler.acquire("busy")
    stop = threading.Event()
    log: list = []
    thread = threading.Thread(target=_worker, args=(scheduler, "waiting", 1, log, stop))
    thread.start()
    time.sleep(0.1)
    assert scheduler.place("waiting") == 1 and scheduler.waiting_count() == 1
    stop.set()
    thread.join(5)
    assert log == [("waiting", "cancelled")]
    assert scheduler.place("waiting") is None and scheduler.waiting_count() == 0


def test_the_wait_estimate_grows_with_the_place_in_line():
    scheduler = FairScheduler(slots=1, slice_s=1.0)
    assert scheduler.acquire("busy")
    threads = [threading.Thread(target=scheduler.acquire, args=(name, lambda: True if done.is_set() else False, True)) for name in "xyz"]
    done = threading.Event()
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    waits = [scheduler.first_turn_wait_s(name) for name in "xyz"]
    assert waits[0] < waits[1] < waits[2]
    done.set()
    for thread in threads:
        thread.join(5)


def test_the_progress_log_keeps_the_best_epoch_and_thins_batch_points():
    log = ProgressLog(target_epochs=3)
    log.begin_session(batches_per_epoch=5000)
    log.record_batch(0, loss=1.0, accuracy=0.5)
    log.add_compute_time(30.0)  # building the model and tracing the first step: not the pace of the batches to come
    assert log.eta_s() is None
    for batch in range(1, 5000):
        log.record_batch(batch, loss=1.0 / (batch + 1), accuracy=0.5)
    assert len(log.batch_steps) < 4000 and log.batch_steps == sorted(log.batch_steps)
    assert log.record_epoch(0, {"loss": 1.0, "val_loss": 0.9})
    assert not log.record_epoch(1, {"loss": 0.8, "val_loss": 1.1})
    assert log.best_epoch == 1 and log.epochs_since_best() == 1
    log.add_compute_time(10.0)
    assert log.eta_s() == pytest.approx(5.0, rel=1e-3)  # two epochs took 10 s (the build aside): the third takes 5


def test_a_lone_run_counts_its_computing_as_it_goes_so_its_time_left_shows(tiny_shapes):
    """Alone, a run has one endless turn: its time must count from the first batches, not only when the turn ends."""
    from dcnn_core.training import lifecycle

    job = _job(tiny_shapes, "alone", epochs=2)  # no scheduler: alone
    turns = lifecycle._Turns(job)
    began = time.monotonic()
    assert turns.take_turn(first=True)
    time.sleep(0.5)  # building the model
    job.begin_session(batches_per_epoch=10)
    job.record_batch(0, loss=1.0, accuracy=0.5)
    turns.between_batches()
    assert job.computing_s() >= 0.5
    for batch in (1, 2):
        time.sleep(0.05)
        job.record_batch(batch, loss=1.0, accuracy=0.5)
        turns.between_batches()
    progress = job.snapshot()
    assert progress.status == training.RUNNING
    # 17 batches left at the pace of the batches (0.05 s each): 0.85 s; with the half second of building in the pace,
    # (0.5 + 3 × 0.05) / 3 × 17 ≈ 3.7 s
    assert progress.eta_s is not None and 17 * 0.05 <= progress.eta_s < 2.5
    turns.between_batches()
    turns.end_turn()
    assert job.computing_s() <= time.monotonic() - began  # the turn's time, counted once however often it was counted


def _job(dataset, owner: str, epochs: int = 1) -> training.TrainingJob:
    return training.TrainingJob(spec.preset("Article baseline"), dataset, training.TrainConfig(epochs=epochs, batch_size=32), owner=owner)


def _engine(dataset, tmp_path, limits: RoomLimits | None = None) -> LocalEngine:
    """An in-process engine whose every data-set reference is ``dataset``."""
    return LocalEngine(RunStore(tmp_path), ServerRules(limits or RoomLimits(), slots=1), resolve=lambda reference: dataset)


def _description(owner: str, epochs: int = 1) -> RunDescription:
    return RunDescription(
        spec.preset("Article baseline"), training.TrainConfig(epochs=epochs, batch_size=32), {"key": "shapes"}, owner=owner
    )


def test_one_training_per_user_however_many_tabs_press_start(tiny_shapes, tmp_path):
    engine = _engine(tiny_shapes, tmp_path)
    results: list = []

    def press_start():
        try:
            results.append(engine.submit(_description("same-user", epochs=30)))
        except Refused as error:
            results.append(error)

    tabs = [threading.Thread(target=press_start) for _ in range(5)]
    for tab in tabs:
        tab.start()
    for tab in tabs:
        tab.join()
    started = [r for r in results if isinstance(r, str)]
    assert len(started) == 1
    assert all("already have a training running" in str(r) for r in results if isinstance(r, Refused))
    engine.stop(started[0])
    assert engine.wait(started[0], 30)
    other = engine.submit(_description("same-user", epochs=30))
    with pytest.raises(Refused, match="already have a training"):
        engine.continue_run(started[0], 1)  # the new run is active: continuing the old one is refused too
    engine.stop(other)
    assert engine.wait(other, 30)
    assert [run.status for run in engine.runs("same-user")] == [training.STOPPED, training.STOPPED]


def test_room_limits_refuse_with_a_message_naming_the_limit(tiny_shapes, tmp_path):
    engine = _engine(tiny_shapes, tmp_path, RoomLimits(max_queue=1, max_runs_per_owner=1))
    first = engine.submit(_description("a", epochs=30))
    with pytest.raises(Refused, match="limit") as refusal:
        engine.submit(_description("b"))
    assert refusal.value.limit == "max_queue"
    engine.stop(first)
    assert engine.wait(first, 30)
    with pytest.raises(Refused, match="delete one"):
        engine.submit(_description("a"))
    assert [run.run_id for run in engine.runs("a")] == [first] and engine.runs("b") == []  # nothing made by a refusal


def test_a_design_too_large_for_the_server_is_refused_before_it_trains(tiny_shapes, tmp_path):
    engine = _engine(tiny_shapes, tmp_path, RoomLimits(max_parameters=1000))
    with pytest.raises(Refused, match="cannot be trained") as refusal:
        engine.submit(_description("a"))
    assert refusal.value.limit == "design" and engine.runs("a") == []


def test_a_run_stops_at_the_rooms_training_time_limit_and_keeps_its_model(tiny_shapes):
    run = training.RunDescription(spec.preset("Simple CNN"), training.TrainConfig(epochs=200, batch_size=8), {"key": "shapes"},
                                  limits=training.RunLimits(max_compute_s=3.0))  # fmt: skip
    job = training.TrainingJob(run, tiny_shapes)
    job.run()
    progress = job.snapshot()
    assert progress.status == training.STOPPED and "limit" in progress.message
    assert progress.epoch < 200 and job.model is not None


def test_images_per_epoch_bounds_the_work_of_an_epoch(tiny_shapes):
    run = training.RunDescription(spec.preset("Article baseline"), training.TrainConfig(epochs=1, batch_size=8, validation_split=0.0),
                                  {"key": "shapes"}, limits=training.RunLimits(images_per_epoch=16))  # fmt: skip
    job = training.TrainingJob(run, tiny_shapes)
    job.run()
    assert job.snapshot().batches_per_epoch == 2


def test_batch_points_are_kept_when_keras_reports_chunks_of_batches():
    """With several batches per call, Keras reports indices 3, 7, 11…: thinning must still keep points."""
    log = ProgressLog(target_epochs=1)
    log.begin_session(batches_per_epoch=20_000)
    for batch in range(3, 20_000, 4):
        log.record_batch(batch, loss=1.0, accuracy=0.5)
    assert 100 < len(log.batch_steps) < 4000
    assert log.batch_steps == sorted(log.batch_steps) and log.batch == 20_000


def test_the_wait_estimate_counts_the_turn_in_progress_and_the_learned_build_time(monkeypatch):
    from dcnn_core.training import scheduler as scheduler_module

    clock = [100.0]
    monkeypatch.setattr(scheduler_module.time, "monotonic", lambda: clock[0])
    scheduler = FairScheduler(slots=1, slice_s=1.0)  # starts by assuming 3 s to build a model
    assert scheduler.acquire("a", first=True)
    done = threading.Event()
    waiter = threading.Thread(target=scheduler.acquire, args=("x", done.is_set, True))
    waiter.start()
    while scheduler.place("x") is None:
        time.sleep(0.01)
    clock[0] = 101.0  # "a" is building its model: ~2 s of its first turn left, then x builds (3 s)
    assert scheduler.first_turn_wait_s("x") == pytest.approx(5.0)
    clock[0] = 104.0  # a's first batch: it took 4 s to build, and its turn is over because x waits
    assert scheduler.turn_is_over("a")
    assert scheduler.first_turn_wait_s("x") == pytest.approx(0.7 * 3.0 + 0.3 * 4.0)
    done.set()
    waiter.join(5)
