"""The instructor's key: a short one turns the room view off at start-up; wrong guesses wait longer and longer."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dcnn_core.room.instructor import MAX_DELAY_S, KeyGuard
from dcnn_core.settings import load_settings

APP = str(Path(__file__).resolve().parent.parent / "app.py")
KEY = "a-long-workshop-key"


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_below_twelve_characters_turns_the_room_view_off_and_the_log_says_why(caplog):
    with caplog.at_level(logging.WARNING):
        settings = load_settings({"DCNN_INSTRUCTOR_KEY": "abc"})
    assert settings.instructor_key == ""
    assert "fewer than 12" in caplog.text and "room view is off" in caplog.text
    assert "abc" not in caplog.text  # the log never holds the key
    assert load_settings({"DCNN_INSTRUCTOR_KEY": KEY}).instructor_key == KEY


def test_wrong_guesses_make_the_next_one_wait_longer_for_every_browser(caplog):
    clock = Clock()
    guard = KeyGuard(KEY, clock=clock)
    with caplog.at_level(logging.WARNING):
        first = guard.check("guess-1")
    assert not first.unlocked and "not the instructor key" in first.message
    assert "guess-1" not in caplog.text and "Wrong instructor key" in caplog.text
    refused = guard.check(KEY)  # even the right key is not heard before the wait is over
    assert not refused.unlocked and "Too many wrong keys" in refused.message
    waits = []
    for number in range(12):
        clock.now += guard.wait_s()
        guard.check(f"guess-{number}")
        waits.append(guard.wait_s())
    assert waits[1] > waits[0] and waits[3] >= 4 * waits[1] - 1e-9  # it grows
    assert max(waits) == MAX_DELAY_S  # up to a ceiling
    clock.now += guard.wait_s()
    assert guard.check(KEY).unlocked
    assert guard.wait_s() == 0 and not guard.check("again").unlocked and guard.wait_s() == 1.0  # counting starts over


def test_the_room_page_is_not_offered_with_a_short_key(monkeypatch, tmp_path):
    from ui import resources

    monkeypatch.setenv("DCNN_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("DCNN_INSTRUCTOR_KEY", "short-key")
    resources.settings.clear()
    try:
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        assert not at.exception
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page("pages/room.py")
    finally:
        resources.settings.clear()


def test_a_second_browser_guessing_right_after_a_wrong_guess_is_told_to_wait(monkeypatch, tmp_path):
    from ui import resources

    monkeypatch.setenv("DCNN_RUNS_DIR", str(tmp_path))
    monkeypatch.setenv("DCNN_INSTRUCTOR_KEY", KEY + "-second")
    resources.settings.clear()
    try:
        browsers = [AppTest.from_file(APP, default_timeout=60) for _ in range(2)]
        for at in browsers:
            at.run()
            at.switch_page("pages/room.py").run()
        browsers[0].text_input(key="room_key").set_value("wrong")
        browsers[0].button[0].click().run()
        browsers[1].text_input(key="room_key").set_value(KEY + "-second")
        browsers[1].button[0].click().run()
        assert "room_unlocked" not in browsers[1].session_state
        assert any("Too many wrong keys" in error.value for error in browsers[1].error)
    finally:
        resources.settings.clear()


def test_the_room_view_names_every_limit_in_words():
    """The limits table shows each setting by a label, never a raw name such as max_disk_mb_per_user."""
    from dataclasses import fields

    from dcnn_core.settings import Settings
    from ui.room_view import LIMIT_NAMES

    shown = [field.name for field in fields(Settings) if field.repr]
    assert [name for name in shown if name not in LIMIT_NAMES] == []
