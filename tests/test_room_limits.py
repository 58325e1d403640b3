"""The instructor changes the room's limits for the session, within the server's maxima; new runs follow them."""

from dataclasses import replace

import pytest
from streamlit.testing.v1 import AppTest

from dcnn_core.room.rules import Refused, RoomLimits, ServerRules

APP = "../app.py"
TINY_SHAPES = {"key": "shapes", "options": {"count_per_class": 40, "image_size": 16, "colour": False, "seed": 0}}


def test_limits_looser_than_the_servers_are_refused():
    rules = ServerRules(RoomLimits(images_per_epoch=6000, max_epochs=20), slots=2)
    with pytest.raises(Refused, match="from 1 to 6000"):
        rules.set_room(replace(rules.limits, images_per_epoch=10_000), slots=1)
    with pytest.raises(Refused, match="from 1 to 20") as refusal:
        rules.set_room(replace(rules.limits, max_epochs=None), slots=1)  # no limit is looser than the server's 20
    assert refusal.value.limit == "max_epochs" and "no limit" in str(refusal.value)
    with pytest.raises(Refused, match="from 1 to 2"):
        rules.set_room(rules.limits, slots=3)
    rules.set_room(replace(rules.limits, images_per_epoch=500, max_epochs=3), slots=1)
    assert rules.limits.images_per_epoch == 500 and rules.slots == 1
    assert rules.plan_run(epochs=10, shared=True).epochs == 3 and rules.plan_run(epochs=10, shared=False).epochs == 10


def test_zero_in_the_environment_means_no_limit_everywhere():
    from dcnn_core.settings import load_settings

    limits = RoomLimits.from_settings(load_settings({"DCNN_MAX_QUEUE": "0", "DCNN_ROOM_MAX_EPOCHS": "0", "DCNN_MAX_PARAMETERS": "0"}))
    assert limits.max_queue is None and limits.max_epochs is None and limits.max_parameters is None
    assert limits.max_runs_per_owner == 20  # unset: the default
    plan = ServerRules(limits).plan_run(epochs=50, shared=True)
    assert plan.epochs == 50 and "epochs" not in plan.line


@pytest.fixture
def instructor_room(monkeypatch, tmp_path):
    from ui import resources

    monkeypatch.setenv("DCNN_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("DCNN_INSTRUCTOR_KEY", "instructor-key-42")
    resources.settings.clear()
    resources.engine.clear()
    yield resources.engine().rules
    resources.settings.clear()
    resources.engine.clear()


def test_the_instructor_tightens_the_limits_and_the_next_attendees_run_follows_them(instructor_room):
    instructor = AppTest.from_file(APP, default_timeout=60)
    instructor.session_state["room_unlocked"] = True
    instructor.run()
    instructor.switch_page("pages/room.py").run()
    assert not instructor.exception
    instructor.number_input(key="room_set_max_epochs").set_value(2)
    instructor.number_input(key="room_set_images_per_epoch").set_value(64)
    next(button for button in instructor.button if button.label == "Apply to new runs").click().run()
    assert any("New limits set for this session" in message.value for message in instructor.success)
    assert instructor_room.limits.max_epochs == 2 and instructor_room.limits.images_per_epoch == 64

    attendee = AppTest.from_file(APP, default_timeout=60)
    attendee.session_state["dataset_choice"] = dict(TINY_SHAPES)
    attendee.run()
    attendee.switch_page("pages/train.py").run()
    assert any("shared with the room" in caption.value and "at most 2 epochs" in caption.value for caption in attendee.caption)
    attendee.slider(key="train_epochs").set_value(10).run()
    attendee.button(key="train_start").click().run()
    from ui import resources

    run_id = attendee.session_state["selected_job"]
    assert resources.engine().wait(run_id, 120)
    progress = resources.progress(run_id)
    assert progress.epochs == 2 and progress.epoch == 2  # cut to the room's limit
    assert progress.batches_per_epoch == -(-64 // 32)  # 64 images per epoch at batch 32


def test_the_servers_disk_for_all_runs_is_capped_whoever_asks(tmp_path):
    """Many people (or many URL tokens) each within their own quota still cannot fill the server's disk."""
    from dcnn_core.design import spec
    from dcnn_core.training.config import TrainConfig
    from dcnn_core.training.description import RunDescription
    from dcnn_core.training.engines.local import LocalEngine
    from dcnn_core.training.runs import RunStore

    engine = LocalEngine(RunStore(tmp_path), ServerRules(RoomLimits(max_disk_mb_total=1)))
    design, config = spec.preset("Simple CNN"), TrainConfig(epochs=1, batch_size=16)
    first = engine.submit(RunDescription(design, config, TINY_SHAPES, owner="a" * 32))
    assert engine.wait(first, 60)
    (tmp_path / first / "padding.bin").write_bytes(b"\0" * (2 << 20))  # the room's runs now take more than 1 MB
    with pytest.raises(Refused, match="disk for saved runs is full") as refusal:
        engine.submit(RunDescription(design, config, TINY_SHAPES, owner="b" * 32))  # somebody else, with an empty quota
    assert refusal.value.limit == "max_disk_mb_total"
    assert (tmp_path / first).is_dir() and engine.run(first) is not None  # nothing already saved is lost


def test_the_memory_for_everyones_own_images_is_capped_and_freed_when_a_set_is_let_go(tmp_path):
    import gc

    from dcnn_core.data import datasets
    from dcnn_core.training.engines.local import SHELF_KEY, LocalEngine, dataset_bytes
    from dcnn_core.training.runs import RunStore

    engine = LocalEngine(RunStore(tmp_path), ServerRules(RoomLimits(max_own_images_mb_total=1)))
    mine = datasets.load_shapes(count_per_class=100, image_size=32, seed=1)  # ~0.6 MB: one fits, two do not
    theirs = datasets.load_shapes(count_per_class=100, image_size=32, seed=2)
    assert 0.5 * 2**20 < dataset_bytes(mine) < 2**20
    own = {"key": "custom", "options": {"name": "my shapes"}}
    engine.share_dataset(mine, own)
    engine.share_dataset(mine, own)  # the same set again is not counted twice
    with pytest.raises(Refused, match="memory for the room's own images is full") as refusal:
        engine.share_dataset(theirs, own)
    assert refusal.value.limit == "max_own_images_mb_total" and "Nothing was changed" in str(refusal.value)
    del mine  # its session ended: the shelf lets it go
    gc.collect()
    reference = engine.share_dataset(theirs, own)
    assert engine.shelf.get(reference[SHELF_KEY]) is theirs and engine.shelf.held_bytes() == dataset_bytes(theirs)
