"""The one door into training, in-process: a run is data going in, plain data coming out."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle

import pytest

from dcnn_core.design import spec
from dcnn_core.room.rules import Refused, RoomLimits, ServerRules
from dcnn_core.training.config import TrainConfig
from dcnn_core.training.description import RunDescription
from dcnn_core.training.engines.local import LocalEngine
from dcnn_core.training.progress import MAX_BATCH_POINTS, ProgressLog, Status
from dcnn_core.training.runs import RunStore

PLAIN = (str, int, float, bool, type(None))


def _plain(value) -> bool:
    """Numbers, strings, lists, tuples and dicts of them: nothing that holds a model, an array or a lock."""
    if isinstance(value, PLAIN):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _plain(item) for key, item in value.items())
    if dataclasses.is_dataclass(value):
        return all(_plain(getattr(value, field.name)) for field in dataclasses.fields(value))
    return False


def test_a_mirror_fed_with_deltas_equals_the_log_even_after_thinning():
    original, mirror, cursor = ProgressLog(target_epochs=3), ProgressLog(), None
    original.begin_session(batches_per_epoch=MAX_BATCH_POINTS)
    for step in range(int(MAX_BATCH_POINTS * 1.5)):  # crosses the thinning of the batch points once
        original.record_batch(step % MAX_BATCH_POINTS, loss=1.0 / (step + 1), accuracy=step / 10_000)
        if step % MAX_BATCH_POINTS == MAX_BATCH_POINTS - 1:
            original.record_epoch(step // MAX_BATCH_POINTS, {"loss": 0.5, "val_loss": 0.4, "val_accuracy": 0.9})
        if step % 997 == 0:
            cursor, change = original.delta(cursor)
            assert _plain(change) and len(json.dumps(change)) < 200_000
            mirror.apply(change)
    cursor, change = original.delta(cursor)
    mirror.apply(change)
    assert mirror.batch_steps == original.batch_steps and mirror.batch_loss == original.batch_loss
    assert mirror.history == original.history and mirror.epoch == original.epoch and mirror.best_epoch == 1
    _, nothing_new = original.delta(cursor)
    assert nothing_new["batch_steps"] == [] and nothing_new["history"]["loss"] == [] and not nothing_new["whole"]


@pytest.fixture
def engine(tiny_shapes, tmp_path) -> LocalEngine:
    return LocalEngine(RunStore(tmp_path), ServerRules(RoomLimits(), slots=1), resolve=lambda reference: tiny_shapes)


def _description(owner: str = "ann", epochs: int = 2) -> RunDescription:
    return RunDescription(spec.preset("Simple CNN"), TrainConfig(epochs=epochs, batch_size=16, seed=1), {"key": "shapes"}, owner=owner)


def test_submit_observe_and_list_give_plain_data_and_the_run_is_saved(engine, tiny_shapes):
    run_id = engine.submit(_description())
    first = engine.observe(run_id)
    assert engine.wait(run_id, 120)
    last = engine.observe(run_id, since=first.cursor)
    assert last.status == Status.FINISHED and last.message == "Finished 2 epochs."
    assert len(last.change["history"]["loss"]) + len(first.change["history"]["loss"]) == 2
    [run] = engine.runs("ann")
    for what in (first, last, run, engine.progress(run_id)):
        assert _plain(what), what
        pickle.dumps(what)
    assert run.dataset_title == tiny_shapes.title and run.can_continue and run.parameters > 0
    assert (engine.store.root / run_id / "model.keras").is_file()
    assert engine.trained(run_id).model is not None  # the results side: the model, in this process


def test_room_limits_apply_only_when_the_server_is_shared(engine):
    engine.rules.set_room(dataclasses.replace(engine.rules.limits, max_epochs=1, images_per_epoch=32), slots=1)
    engine.visit("ann")
    alone = engine.submit(_description("ann", epochs=2))
    assert engine.wait(alone, 120) and engine.progress(alone).epoch == 2
    engine.visit("bob")  # a second person: the room's limits now apply to new runs
    assert "at most 1 epoch" in engine.plan(2).line and "1 epochs" not in engine.plan(2).line
    shared = engine.submit(_description("bob", epochs=2))
    assert engine.wait(shared, 120)
    progress = engine.progress(shared)
    assert progress.epochs == 1 and progress.batches_per_epoch == math.ceil(32 / 16)


def test_own_images_travel_by_reference_and_a_lost_set_is_refused(engine, tiny_shapes):
    reference = engine.share_dataset(tiny_shapes, {"key": "custom", "options": {"name": "mine"}, "title": "Mine"})
    assert set(reference) == {"key", "options", "title", "shelf"} and _plain(reference)
    run_id = engine.submit(dataclasses.replace(_description(epochs=1), dataset_ref=reference))
    assert engine.wait(run_id, 120) and engine.progress(run_id).status == Status.FINISHED
    with pytest.raises(Refused, match="no longer on the server") as refusal:
        engine.submit(dataclasses.replace(_description("cy", epochs=1), dataset_ref={**reference, "shelf": "0" * 16}))
    assert refusal.value.limit == "data" and engine.runs("cy") == []


def test_continue_follows_the_rooms_limits_like_a_start(engine):
    alone = engine.submit(_description("ann", epochs=1))
    assert engine.wait(alone, 120)
    engine.rules.set_room(dataclasses.replace(engine.rules.limits, max_epochs=2, images_per_epoch=32), slots=1)
    engine.visit("ann")
    engine.visit("bob")  # the room fills after the run was started alone
    engine.continue_run(alone, 10)
    assert engine.wait(alone, 120)
    progress = engine.progress(alone)
    assert progress.epoch == 1 + 2  # 10 more asked, the room allows 2 per session of training
    assert progress.batches_per_epoch == math.ceil(32 / 16)  # and its images per epoch
