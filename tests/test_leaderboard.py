"""The leaderboard: a real SQLite file (core), and the pages that publish, show, load and clear it (AppTest)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dcnn_core.design import spec
from dcnn_core.room import leaderboard
from dcnn_core.room.leaderboard import Leaderboard, LeaderboardFull
from dcnn_core.training import job as training
from dcnn_core.training.config import TrainConfig
from tests.helpers import goto

SHAPES = {"key": "shapes", "options": {"image_size": 16}}


def _publish(board: Leaderboard, owner: str = "a" * 32, run_id: str = "r1", name: str = "Ada", accuracy: float = 0.9, **extra):
    values = dict(
        owner=owner, run_id=run_id, display_name=name, dataset_ref=SHAPES, dataset_title="Shapes",
        spec=spec.preset("Simple CNN"), parameters=1234, config=TrainConfig(epochs=3), test_accuracy=accuracy, training_s=12.5,
    )  # fmt: skip
    return board.publish(**(values | extra))


# --- core: a real file ----------------------------------------------------------------------


def test_migration_from_an_empty_file_creates_the_schema(tmp_path):
    path = tmp_path / "board.sqlite3"
    path.touch()  # an empty file: SQLite treats it as a new database
    board = Leaderboard(path)
    assert board.schema_version == leaderboard.SCHEMA_VERSION == 1
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = {row[1] for row in connection.execute("PRAGMA table_info(entries)")}
    assert {"display_name", "owner_hash", "spec_json", "config_json", "test_accuracy", "training_s", "created_at"} <= columns
    Leaderboard(path)  # opening again migrates nothing and loses nothing
    assert board.entries() == []


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "board.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="schema version 99"):
        Leaderboard(path)


def test_publish_then_restart_keeps_the_entry_with_its_design_and_settings(tmp_path):
    path = tmp_path / "board.sqlite3"
    published = _publish(Leaderboard(path), name="  Ada  ")
    reopened = Leaderboard(path)  # a server restart: new object, new connections
    loaded = reopened.load(published.entry_id)
    assert loaded.display_name == "Ada"
    assert loaded.spec.to_dict() == spec.preset("Simple CNN").to_dict()
    assert loaded.config.epochs == 3
    assert loaded.dataset_ref == SHAPES and loaded.dataset_title == "Shapes"
    assert loaded.summary == "3 conv blocks (32→64→128 filters) · dense 128 · 1,234 parameters"
    assert loaded.test_accuracy == pytest.approx(0.9) and loaded.training_s == pytest.approx(12.5)
    assert loaded.published_by("a" * 32) and not loaded.published_by("b" * 32)
    assert "a" * 32 not in path.read_bytes().decode(errors="replace")  # the token that reattaches runs is never stored


def test_twenty_threads_publishing_at_once_all_land(tmp_path):
    board = Leaderboard(tmp_path / "board.sqlite3")
    errors: list[BaseException] = []
    start = threading.Barrier(20)

    def publish(number: int) -> None:
        try:
            start.wait()
            _publish(Leaderboard(board.path), owner=f"{number:032x}", run_id=f"run{number}", name=f"Person {number}", accuracy=number / 100)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=publish, args=(number,)) for number in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    entries = board.entries()
    assert len(entries) == 20
    assert [entry.display_name for entry in entries][:3] == ["Person 19", "Person 18", "Person 17"]


def test_limits_hold_under_concurrent_publishes(tmp_path):
    board = Leaderboard(tmp_path / "board.sqlite3", max_per_owner=100, max_entries=5)
    refused: list[str] = []

    def publish(number: int) -> None:
        try:
            _publish(board, owner=f"{number:032x}", run_id=f"run{number}")
        except LeaderboardFull as error:
            refused.append(str(error))

    threads = [threading.Thread(target=publish, args=(number,)) for number in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(board.entries()) == 5
    assert len(refused) == 7 and "full" in refused[0]


def test_entries_per_owner_are_limited_and_republishing_renames(tmp_path):
    board = Leaderboard(tmp_path / "board.sqlite3", max_per_owner=2)
    _publish(board, run_id="r1")
    _publish(board, run_id="r2")
    renamed = _publish(board, run_id="r2", name="Ada L.")  # the same run again: a rename, not a new entry
    assert renamed.display_name == "Ada L." and len(board.entries()) == 2
    with pytest.raises(LeaderboardFull, match="withdraw one first"):
        _publish(board, run_id="r3")
    _publish(board, owner="b" * 32, run_id="r3")  # someone else still can


@pytest.mark.parametrize(
    ("name", "message"),
    [("", "Enter a display name"), ("   ", "Enter a display name"), ("x" * 41, "keep it to 40"),
     ("Ada\nLovelace", "control"), ("Tab\there", "control"), ("evil\u202egnp", "control"), ("nul\x00", "control")],
)  # fmt: skip
def test_bad_display_names_are_refused_with_a_message(tmp_path, name, message):
    board = Leaderboard(tmp_path / "board.sqlite3")
    with pytest.raises(ValueError, match=message):
        _publish(board, name=name)
    assert board.entries() == []


def test_markdown_and_html_names_are_kept_as_typed(tmp_path):
    board = Leaderboard(tmp_path / "board.sqlite3")
    entry = _publish(board, name="<b>**Zoë**</b>")
    assert board.load(entry.entry_id).display_name == "<b>**Zoë**</b>"


def test_withdraw_only_by_its_author_and_clear(tmp_path):
    board = Leaderboard(tmp_path / "board.sqlite3")
    entry = _publish(board)
    assert not board.withdraw(entry.entry_id, "b" * 32)
    assert board.load(entry.entry_id) is not None
    assert board.withdraw(entry.entry_id, "a" * 32)
    assert board.load(entry.entry_id) is None
    _publish(board, run_id="x")
    _publish(board, owner="b" * 32, run_id="y")
    assert board.clear() == 2 and board.entries() == []


def test_best_by_dataset_groups_sorts_and_marks_the_dense_baseline(tmp_path):
    board = Leaderboard(tmp_path / "board.sqlite3")
    _publish(board, run_id="cnn", accuracy=0.95, training_s=30.0)
    _publish(board, run_id="dense", accuracy=0.70, training_s=5.0, spec=spec.preset("Article baseline"))
    _publish(board, run_id="digits", accuracy=0.5, dataset_ref={"key": "digits", "options": {}}, dataset_title="Handwritten digits")
    best = board.best_by_dataset()
    assert list(best) == ["Handwritten digits", "Shapes"]
    assert [entry.test_accuracy for entry in best["Shapes"]] == [0.95, 0.70]
    assert [entry.dense_baseline for entry in best["Shapes"]] == [False, True]
    assert [entry.training_s for entry in board.best_by_dataset(sort_by="training_s")["Shapes"]] == [5.0, 30.0]
    assert len(board.best_by_dataset(limit=1)["Shapes"]) == 1
    with pytest.raises(ValueError, match="Sort by"):
        board.best_by_dataset(sort_by="owner_hash; DROP TABLE entries")


def test_display_names_and_anonymous_ids(tmp_path):
    board = Leaderboard(tmp_path / "board.sqlite3")
    _publish(board, name="Ada")
    assert board.display_names() == {leaderboard.owner_hash("a" * 32): "Ada"}
    assert leaderboard.anonymous_id("a" * 32).startswith("attendee-") and "a" * 8 not in leaderboard.anonymous_id("a" * 32)


# --- the pages (AppTest) --------------------------------------------------------------------

APP = str(Path(__file__).resolve().parent.parent / "app.py")
TIMEOUT = 60
TINY_SHAPES = {"key": "shapes", "options": {"count_per_class": 40, "image_size": 16, "colour": False, "seed": 0}}


@pytest.fixture
def room(monkeypatch, tmp_path):
    """A fresh runs folder (so a fresh leaderboard file), no instructor key, settings re-read."""
    from ui import resources

    monkeypatch.setenv("DCNN_RUNS_DIR", str(tmp_path))
    monkeypatch.delenv("DCNN_INSTRUCTOR_KEY", raising=False)
    resources.settings.clear()
    yield tmp_path
    resources.settings.clear()


def _attendee() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state["dataset_choice"] = dict(TINY_SHAPES)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _train(at: AppTest, epochs: int, wait: bool = True) -> training.TrainingJob:
    from ui import resources

    goto(at, "train")
    at.slider(key="train_epochs").set_value(epochs).run()
    at.button(key="train_start").click().run()
    job = resources.engine().registry.get(at.session_state["selected_job"])
    if wait:
        assert job.wait(120), "the training did not end"
        at.run()
    return job


def _board_names(at: AppTest) -> list[str]:
    return [name for frame in at.dataframe for name in frame.value["Name"]]


def test_publish_then_the_run_is_on_the_leaderboard_and_its_author_can_withdraw_it(room):
    at = _attendee()
    _train(at, epochs=1)
    assert at.text_input(key="train_publish_name")  # a finished run offers publishing
    at.text_input(key="train_publish_name").set_value("Ada\nL").run()
    at.button(key="train_publish").click().run()
    assert any("control" in error.value for error in at.error)  # refused, with a message
    at.text_input(key="train_publish_name").set_value("**Ada** <b>").run()
    at.button(key="train_publish").click().run()
    assert any("Published as" in message.value and "\\*\\*Ada\\*\\*" in message.value for message in at.success)

    goto(at, "leaderboard")
    assert _board_names(at) == ["**Ada** <b> (you)"]
    assert at.dataframe[0].value["Design"][0] == "Simple CNN"
    withdraw = [button for button in at.button if button.label == "Withdraw"]
    assert len(withdraw) == 1
    withdraw[0].click().run()
    assert any("withdrawn" in message.value for message in at.success)
    assert _board_names(at) == []
    assert any("No runs published yet" in info.value for info in at.info)


def test_another_attendee_loads_a_published_design_into_the_model_and_train_pages(room):
    author = "b" * 32
    Leaderboard(room / leaderboard.FILE_NAME).publish(
        owner=author, run_id="run1", display_name="Grace", dataset_ref=TINY_SHAPES, dataset_title="Shapes",
        spec=spec.preset("VGG-style mini"), parameters=99, config=TrainConfig(epochs=7, batch_size=64), test_accuracy=0.93,
        training_s=40.0,
    )  # fmt: skip
    at = _attendee()
    at.session_state["dataset_choice"] = {"key": "digits", "options": {}}
    goto(at, "leaderboard")
    assert _board_names(at) == ["Grace"]
    assert not [button for button in at.button if button.label == "Withdraw"]  # not this attendee's entry
    [load] = [button for button in at.button if button.label == "Load this design"]
    load.click().run()
    assert any("Loaded" in message.value and "VGG" in message.value for message in at.success)

    goto(at, "model")
    assert at.session_state["model_block_count"] == 2
    assert at.session_state["model_b0_conv_layers"] == 2 and at.session_state["model_b0_batch_norm"] is True
    assert any("VGG\\-style mini" in markdown.value for markdown in at.markdown)
    goto(at, "train")
    assert at.slider(key="train_epochs").value == 7
    assert at.select_slider(key="train_batch_size").value == 64
    assert at.session_state["dataset_choice"].to_dict() == TINY_SHAPES  # the data set the entry was trained on


def test_room_page_is_absent_without_the_instructor_key(room):
    at = _attendee()
    with pytest.raises(ValueError, match="Could not find a navigation page"):  # not in the navigation at all
        at.switch_page("pages/room.py")
    assert goto(at, "leaderboard").title[0].value == "Leaderboard"  # attendees' pages are there


def test_instructor_sees_and_stops_another_users_training(room, monkeypatch):
    from ui import resources

    monkeypatch.setenv("DCNN_INSTRUCTOR_KEY", "workshop-key")
    resources.settings.clear()
    attendee = _attendee()
    job = _train(attendee, epochs=40, wait=False)

    instructor = AppTest.from_file(APP, default_timeout=TIMEOUT)
    instructor.run()
    goto(instructor, "room")
    assert instructor.title[0].value == "Room"
    instructor.text_input(key="room_key").set_value("wrong")  # typed into the form, then submitted
    instructor.button[0].click().run()
    assert any("not the instructor key" in error.value for error in instructor.error)
    assert not [b for b in instructor.button if b.key == f"room_stop_{job.job_id}"]
    instructor.text_input(key="room_key").set_value("workshop-key")
    instructor.button[0].click().run()
    assert instructor.session_state["room_unlocked"] is True
    text = " ".join(markdown.value for markdown in instructor.markdown)
    assert leaderboard.anonymous_id(job.owner).replace("-", "\\-") in text and job.owner not in text
    assert any(metric.label == "CPU (all cores)" for metric in instructor.metric)
    _publish(Leaderboard(room / leaderboard.FILE_NAME), owner=job.owner, name="Grace H")  # once named, the room shows the name
    instructor.run()
    assert "Grace H" in " ".join(markdown.value for markdown in instructor.markdown)

    instructor.button(key=f"room_stop_{job.job_id}").click().run()
    assert job.wait(30), "the instructor's stop did not end the training"
    assert job.snapshot().status == "stopped"
    assert "Stopped by the instructor" in job.snapshot().message
    attendee.run()
    assert any("Stopped by the instructor" in info.value for info in attendee.info)


def test_instructor_clears_the_leaderboard(room, monkeypatch):
    from ui import resources

    monkeypatch.setenv("DCNN_INSTRUCTOR_KEY", "k")
    resources.settings.clear()
    _publish(Leaderboard(room / leaderboard.FILE_NAME))
    at = _attendee()
    at.session_state["room_unlocked"] = True
    goto(at, "room")
    assert at.button(key="room_clear").disabled
    at.checkbox(key="room_confirm_clear").check().run()
    at.button(key="room_clear").click().run()
    assert any("Removed 1 leaderboard entry" in message.value for message in at.success)
    assert Leaderboard(room / leaderboard.FILE_NAME).entries() == []
