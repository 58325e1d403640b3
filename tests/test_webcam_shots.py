"""Webcam pictures on the Data page ("Build classes") are capped per class and in all, with a one-line message."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers import png
from ui import custom_data_view, resources

TIMEOUT = 60


def _section():
    from ui import state
    from ui.custom_data_view import draw_custom_data_section

    state.init_state()
    draw_custom_data_section()


@pytest.fixture
def at(monkeypatch) -> AppTest:
    """The "Your images" section with small caps (3 a class, 5 in all), three classes named."""
    monkeypatch.setattr(custom_data_view, "MAX_WEBCAM_SHOTS_PER_CLASS", 3)
    monkeypatch.setattr(custom_data_view, "MAX_WEBCAM_SHOTS", 5)
    resources.settings.clear()
    app = AppTest.from_function(_section, default_timeout=TIMEOUT)
    app.run()
    app.text_area(key="data_custom_class_names").set_value("Cats\nDogs\nBirds").run()
    assert not app.exception
    yield app
    resources.settings.clear()


def _shoot(at: AppTest, index: int, count: int) -> None:
    shot = png(np.full((24, 32, 3), 40 * index, np.uint8), "JPEG")
    for _ in range(count):
        at.camera_input(key=f"data_custom_camera_{index}").set_value(("camera.jpg", shot, "image/jpeg")).run()
        assert not at.exception, [e.value for e in at.exception]


def _cameras(at: AppTest) -> set[str]:
    return {camera.key for camera in at.get("camera_input")}


def test_the_camera_goes_away_at_the_cap_with_one_line_and_comes_back_after_forgetting(at):
    at.toggle(key="data_custom_webcam_on_0").set_value(True).run()
    _shoot(at, 0, 3)
    assert "3 webcam pictures kept for this class." in [caption.value for caption in at.caption]
    at.run()
    assert "data_custom_camera_0" not in _cameras(at)  # no fourth picture for this class
    [message] = [info.value for info in at.info if "webcam pictures" in info.value]
    assert message.startswith("This class has 3 webcam pictures") and "\n" not in message

    at.toggle(key="data_custom_webcam_on_1").set_value(True).run()
    _shoot(at, 1, 2)
    at.toggle(key="data_custom_webcam_on_2").set_value(True).run()
    assert _cameras(at) == set()  # five in all: no class takes more
    assert any(info.value.startswith("You have 5 webcam pictures in all") for info in at.info)
    kept = at.session_state[custom_data_view.WEBCAM_SHOTS]
    assert [len(kept[index]["kept"]) for index in range(3)] == [3, 2, 0]

    at.button(key="data_custom_clear_shots_0").click().run()
    assert _cameras(at) == {"data_custom_camera_0", "data_custom_camera_1", "data_custom_camera_2"}
    assert not [info for info in at.info if "webcam pictures" in info.value]


def test_keeping_a_shot_refuses_repeats_and_pictures_over_the_caps(monkeypatch):
    monkeypatch.setattr(custom_data_view, "MAX_WEBCAM_SHOTS_PER_CLASS", 2)
    monkeypatch.setattr(custom_data_view, "MAX_WEBCAM_SHOTS", 3)
    shots: dict[int, dict] = {}
    assert custom_data_view.keep_webcam_shot(shots, 0, "a", b"1")
    assert not custom_data_view.keep_webcam_shot(shots, 0, "a", b"1")  # the same picture, seen on a rerun
    assert custom_data_view.keep_webcam_shot(shots, 0, "b", b"2")
    assert not custom_data_view.keep_webcam_shot(shots, 0, "c", b"3")  # the class is full
    assert custom_data_view.keep_webcam_shot(shots, 1, "d", b"4")
    assert not custom_data_view.keep_webcam_shot(shots, 2, "e", b"5")  # all classes together are full
    assert {index: list(shots[index]["kept"]) for index in shots} == {0: ["a", "b"], 1: ["d"], 2: []}
    shots[0]["kept"].clear()  # "Forget them"
    assert not custom_data_view.keep_webcam_shot(shots, 0, "c", b"3")  # refused once: not taken back from the camera later
    assert custom_data_view.keep_webcam_shot(shots, 0, "f", b"6")
