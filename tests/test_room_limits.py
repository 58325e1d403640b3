"""The instructor changes the room's limits for the session, within the server's maxima; new runs follow them."""

from dataclasses import replace

import pytest
from streamlit.testing.v1 import AppTest

from dcnn_core.jobs import JobRegistry, Refused, RoomLimits

APP = "../app.py"
TINY_SHAPES = {"key": "shapes", "options": {"count_per_class": 40, "image_size": 16, "colour": False, "seed": 0}}


def test_limits_looser_than_the_servers_are_refused():
    registry = JobRegistry(max_concurrent=2, limits=RoomLimits(images_per_epoch=6000, max_epochs=20))
    with pytest.raises(Refused, match="from 1 to 6000"):
        registry.set_room(replace(registry.limits, images_per_epoch=10_000), slots=1)
    with pytest.raises(Refused, match="from 1 to 20"):
        registry.set_room(replace(registry.limits, max_epochs=0), slots=1)  # 0 would mean no bound at all
    with pytest.raises(Refused, match="from 1 to 2"):
        registry.set_room(registry.limits, slots=3)
    registry.set_room(replace(registry.limits, images_per_epoch=500, max_epochs=3), slots=1)
    assert registry.limits.images_per_epoch == 500 and registry.scheduler.slots == 1


@pytest.fixture
def instructor_room(monkeypatch, tmp_path):
    from ui import resources

    monkeypatch.setenv("DCNN_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("DCNN_INSTRUCTOR_KEY", "k")
    resources.settings.clear()
    registry = resources.job_registry()
    before = (registry.limits, registry.scheduler.slots)
    yield registry
    registry.limits, registry.scheduler.slots = before
    resources.settings.clear()


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

    job = resources.job_registry().get(attendee.session_state["selected_job"])
    assert job.wait(120)
    progress = job.snapshot()
    assert progress.epochs == 2 and progress.epoch == 2  # cut to the room's limit
    assert progress.batches_per_epoch == -(-64 // 32)  # 64 images per epoch at batch 32
