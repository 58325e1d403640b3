"""The leaderboard: a real SQLite file (core), and the pages that publish, show, load and clear it (AppTest)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dcnn_core.design import spec
from dcnn_core.room import leaderboard
from dcnn_core.room.instructor import FIRST_DELAY_S
from dcnn_core.room.leaderboard import Leaderboard, LeaderboardFull, LeaderboardUnavailable
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


def test_a_newer_schema_is_refused_and_left_as_it_is(tmp_path, caplog):
    path = tmp_path / "board.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 99")
    before = path.read_bytes()
    board = Leaderboard(path)  # opening touches nothing: the file is read on first use
    with caplog.at_level(logging.ERROR), pytest.raises(LeaderboardUnavailable, match="newer version of this app") as raised:
        board.entries()
    assert str(raised.value).count(".") == 1 and str(tmp_path) not in str(raised.value)  # one sentence, no server path
    assert "schema version 99" in caplog.text and "left untouched" in caplog.text
    assert path.read_bytes() == before


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


def test_display_names_and_attendee_numbers(tmp_path):
    board = Leaderboard(tmp_path / "board.sqlite3")
    _publish(board, name="Ada")
    assert board.display_names() == {leaderboard.owner_hash("a" * 32): "Ada"}
    numbers = leaderboard.AttendeeNumbers()
    assert [numbers.name("c" * 32), numbers.name("d" * 32), numbers.name("c" * 32)] == ["Attendee 1", "Attendee 2", "Attendee 1"]


def test_published_runs_of_one_owner(tmp_path):
    board = Leaderboard(tmp_path / "board.sqlite3")
    _publish(board, run_id="r1", name="Ada")
    _publish(board, run_id="r2", name="Ada L.")
    _publish(board, owner="b" * 32, run_id="r3", name="Grace")
    assert board.published_runs("a" * 32) == {"r1": "Ada", "r2": "Ada L."}
    assert board.published_runs("e" * 32) == {}


def test_the_instructor_removes_one_entry_or_every_entry_of_one_person(tmp_path):
    path = tmp_path / "board.sqlite3"
    board = Leaderboard(path)
    first = _publish(board, run_id="r1")
    _publish(board, run_id="r2")
    _publish(board, run_id="r3")
    grace = _publish(board, owner="b" * 32, run_id="r1", name="Grace")
    assert board.remove(first.entry_id) and not board.remove(first.entry_id)  # anyone's entry; gone once
    assert [entry.entry_id for entry in Leaderboard(path).entries() if entry.entry_id == first.entry_id] == []
    assert board.remove_owner(leaderboard.owner_hash("a" * 32)) == 2
    assert [entry.display_name for entry in Leaderboard(path).entries()] == ["Grace"]  # the others' entries stay
    assert board.remove_owner(leaderboard.owner_hash("a" * 32)) == 0
    assert board.load(grace.entry_id) is not None


# --- core: a leaderboard file that cannot be used --------------------------------------------------


def _unavailable_everywhere(board: Leaderboard, match: str) -> None:
    """Every read and write raises the one-sentence LeaderboardUnavailable (never a sqlite3 error)."""
    calls = [board.entries, board.best_by_dataset, board.display_names, lambda: board.load(1), lambda: board.published_runs("a" * 32),
             lambda: _publish(board), lambda: board.withdraw(1, "a" * 32), lambda: board.remove(1), lambda: board.remove_owner("x"),
             board.clear]  # fmt: skip
    for call in calls:
        with pytest.raises(LeaderboardUnavailable, match=match) as raised:
            call()
        assert str(raised.value).startswith("The leaderboard is unavailable") and str(raised.value).count(".") == 1


def test_a_garbage_file_is_unavailable_and_never_overwritten(tmp_path, caplog):
    path = tmp_path / leaderboard.FILE_NAME
    garbage = b"these are someone's notes, not a database\n" * 200
    path.write_bytes(garbage)
    board = Leaderboard(path)
    with caplog.at_level(logging.DEBUG, logger="dcnn_core.room.leaderboard_db"):
        _unavailable_everywhere(board, "not a readable leaderboard")
    assert path.read_bytes() == garbage
    assert sorted(p.name for p in tmp_path.iterdir()) == [leaderboard.FILE_NAME]  # no journal, no new file beside it
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1, "a page refreshing every few seconds must not flood the log"  # then debug lines
    assert "file is not a database" in errors[0].getMessage() and "left untouched" in errors[0].getMessage()
    assert str(path) in errors[0].getMessage()  # the operator learns which file; the user never does


@contextlib.contextmanager
def _holding(path: Path, exclusive: bool) -> Iterator[None]:
    """Another connection holds the file's write lock (``exclusive``: every lock, readers shut out too) until the block ends."""
    other = sqlite3.connect(path, isolation_level=None)
    if exclusive:
        other.execute("PRAGMA locking_mode = EXCLUSIVE")
        other.execute("BEGIN EXCLUSIVE")
        other.execute("UPDATE entries SET display_name = display_name")
        other.execute("COMMIT")  # in exclusive locking mode the lock stays after COMMIT
    else:
        other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()


def test_a_file_locked_longer_than_the_busy_timeout_is_unavailable_then_works_again(tmp_path):
    path = tmp_path / "board.sqlite3"
    entry = _publish(Leaderboard(path))
    board = Leaderboard(path, busy_timeout_ms=100)
    with _holding(path, exclusive=True):
        started = time.monotonic()
        _unavailable_everywhere(board, "busy")
        assert time.monotonic() - started < 10  # each call waited about the busy timeout, not the default 10 s
    assert board.load(entry.entry_id).display_name == "Ada"  # nothing was lost, and it works again
    assert _publish(board, run_id="r2").display_name == "Ada"


def test_while_another_writer_holds_the_file_reads_still_work_and_publishing_is_unavailable(tmp_path):
    path = tmp_path / "board.sqlite3"
    entry = _publish(Leaderboard(path))
    board = Leaderboard(path, busy_timeout_ms=100)  # a new server process: it migrates (reads the version) under the lock
    with _holding(path, exclusive=False):
        assert [found.entry_id for found in board.entries()] == [entry.entry_id]
        with pytest.raises(LeaderboardUnavailable, match="busy"):
            _publish(board, run_id="r2")
    assert len(board.entries()) == 1
    _publish(board, run_id="r2")
    assert len(board.entries()) == 2


def test_a_full_file_refuses_publishing_and_keeps_what_it_has(tmp_path):
    path = tmp_path / "board.sqlite3"
    board = Leaderboard(path, max_pages=8)  # SQLite's own limit: a real "database or disk is full"
    published = []
    with pytest.raises(LeaderboardUnavailable, match="full") as raised:
        for number in range(100):
            published.append(_publish(board, run_id=f"r{number}").entry_id)
    assert raised.value.kind == "SQLITE_FULL"
    assert 0 < len(published) < 100
    assert [entry.entry_id for entry in sorted(board.entries(), key=lambda entry: entry.entry_id)] == published  # reads still work
    _publish(Leaderboard(path), run_id="again")  # with room to grow (the default cap), the same file takes new entries
    assert len(Leaderboard(path).entries()) == len(published) + 1


def _writable(path: Path) -> bool:
    """Whether this process can still write ``path`` (a file, or a folder's contents), tried for real."""
    try:
        if path.is_dir():
            (path / ".probe").touch()
            (path / ".probe").unlink()
        else:
            path.open("ab").close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """``path`` made read-only for real: chmod, and for root (whom chmod does not stop) the immutable flag."""
    mode = path.stat().st_mode
    path.chmod(0o555 if path.is_dir() else 0o444)
    immutable = False
    try:
        if _writable(path):
            chattr = shutil.which("chattr")
            immutable = bool(chattr) and subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode == 0
            if not immutable or _writable(path):
                pytest.skip(f"running as uid {os.geteuid()}: chmod does not stop this user's writes and chattr +i is not available")
        yield
    finally:
        if immutable:
            subprocess.run([shutil.which("chattr"), "-i", str(path)], check=True)
        path.chmod(mode)


def test_a_read_only_file_still_reads_and_refuses_changes_in_one_sentence(tmp_path):
    path = tmp_path / "board.sqlite3"
    entry = _publish(Leaderboard(path))
    before = path.read_bytes()
    board = Leaderboard(path)  # as a server restarted on a read-only file would
    with _read_only(path):
        assert [found.entry_id for found in board.entries()] == [entry.entry_id]
        for change in (lambda: _publish(board, run_id="r2"), lambda: board.withdraw(entry.entry_id, "a" * 32), board.clear):
            with pytest.raises(LeaderboardUnavailable, match="may not write its file"):
                change()
        assert path.read_bytes() == before
    assert board.load(entry.entry_id) is not None


def test_a_read_only_folder_without_a_leaderboard_is_unavailable(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    board = Leaderboard(folder / leaderboard.FILE_NAME)
    with _read_only(folder):
        _unavailable_everywhere(board, "cannot open its file")
        assert list(folder.iterdir()) == []
    assert board.entries() == []  # once the folder may be written, the leaderboard starts


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
    time.sleep(FIRST_DELAY_S + 0.2)  # a wrong guess makes the next one wait
    instructor.text_input(key="room_key").set_value("workshop-key")
    instructor.button[0].click().run()
    assert instructor.session_state["room_unlocked"] is True
    text = " ".join(markdown.value for markdown in instructor.markdown)
    assert re.search(r"\*\*Attendee \d+\*\*", text) and "attendee\\-" not in text and job.owner not in text  # a friendly name, no token
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

    monkeypatch.setenv("DCNN_INSTRUCTOR_KEY", "instructor-key-42")
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


GARBAGE = b"someone's notes, not a leaderboard\n" * 300


def _shown(at: AppTest) -> str:
    """Every text the page showed (titles, Markdown, captions, alerts, exceptions), joined."""
    kinds = ("title", "subheader", "markdown", "caption", "info", "warning", "error", "success", "exception")
    return "\n".join(str(element.value) for kind in kinds for element in at.get(kind))


def _says_unavailable(at: AppTest, room: Path) -> None:
    """The page drew, with the one sentence and nothing of SQLite, Python or the server's folders."""
    assert not at.exception, [e.value for e in at.exception]
    assert any(warning.value.startswith("The leaderboard is unavailable") for warning in at.warning)
    shown = _shown(at)
    assert "DatabaseError" not in shown and "Traceback" not in shown and "sqlite" not in shown.lower() and str(room) not in shown


def test_the_leaderboard_page_with_a_garbage_file_says_it_is_unavailable_in_one_sentence(room):
    path = room / leaderboard.FILE_NAME
    path.write_bytes(GARBAGE)
    at = goto(_attendee(), "leaderboard")
    assert at.title[0].value == "Leaderboard"
    _says_unavailable(at, room)
    assert any("not a readable leaderboard" in warning.value for warning in at.warning)
    assert path.read_bytes() == GARBAGE  # someone's data, left as it was


def test_a_run_is_kept_while_the_file_is_broken_then_published_in_one_click_from_the_leaderboard_page(room):
    path = room / leaderboard.FILE_NAME
    at = _attendee()
    job = _train(at, epochs=1)
    path.write_bytes(GARBAGE)  # the file breaks after the run finished
    at.run()
    _says_unavailable(at, room)  # the Train page: publishing says it is unavailable
    assert not [button for button in at.button if button.key == "train_publish"]
    [runs] = [frame.value for frame in at.dataframe if "Status" in frame.value.columns]
    assert runs["Status"].tolist() == ["finished"]  # the run stays
    goto(at, "leaderboard")
    _says_unavailable(at, room)
    assert not [button for button in at.button if button.key == "leaderboard_publish"]

    path.rename(room / "kept.sqlite3")  # the operator moves the file away, as the log tells them
    goto(at, "leaderboard")
    assert (room / "kept.sqlite3").read_bytes() == GARBAGE
    assert at.selectbox(key="leaderboard_publish_run").value == job.job_id  # the latest finished run, already chosen
    at.text_input(key="leaderboard_publish_name").set_value("Ada")
    at.button(key="leaderboard_publish").click().run()  # one click
    assert any("Published as **Ada**" in message.value for message in at.success)
    assert _board_names(at) == ["Ada (you)"]
    assert not [button for button in at.button if button.key == "leaderboard_publish"]  # nothing left to publish


def test_the_room_view_with_a_garbage_leaderboard_still_stops_trainings_and_sets_limits(room, monkeypatch):
    from ui import resources

    monkeypatch.setenv("DCNN_INSTRUCTOR_KEY", "instructor-key-42")
    resources.settings.clear()
    (room / leaderboard.FILE_NAME).write_bytes(GARBAGE)
    attendee = _attendee()
    job = _train(attendee, epochs=40, wait=False)
    instructor = _attendee()
    instructor.session_state["room_unlocked"] = True
    goto(instructor, "room")
    _says_unavailable(instructor, room)
    assert instructor.number_input(key="room_set_slots")  # the limits form
    assert not [button for button in instructor.button if button.key in ("room_clear", "room_remove_entry")]
    instructor.button(key=f"room_stop_{job.job_id}").click().run()
    assert job.wait(30), "the instructor's stop did not end the training"
    assert job.snapshot().status == "stopped"


def test_the_instructor_removes_one_entry_then_one_persons_entries_after_confirming(room, monkeypatch):
    from ui import resources

    monkeypatch.setenv("DCNN_INSTRUCTOR_KEY", "instructor-key-42")
    resources.settings.clear()
    board = Leaderboard(room / leaderboard.FILE_NAME)
    _publish(board, run_id="r1", name="Ada", accuracy=0.9)
    _publish(board, run_id="r2", name="**Ada**", accuracy=0.8)
    grace = _publish(board, owner="b" * 32, run_id="r1", name="Grace", accuracy=0.7)
    at = _attendee()
    at.session_state["room_unlocked"] = True
    goto(at, "room")

    at.selectbox(key="room_remove_pick").set_value(grace.entry_id).run()
    at.button(key="room_remove_entry").click().run()
    assert any(warning.value.startswith("Remove the entry Grace") for warning in at.warning)
    assert len(board.entries()) == 3  # nothing removed before the confirmation
    at.button(key="room_remove_cancel").click().run()
    assert not [button for button in at.button if button.key == "room_remove_yes"] and len(board.entries()) == 3
    at.button(key="room_remove_entry").click().run()
    at.button(key="room_remove_yes").click().run()
    assert any("Removed 1 leaderboard entry" in message.value for message in at.success)
    assert [entry.display_name for entry in board.entries()] == ["Ada", "**Ada**"]

    ada = leaderboard.owner_hash("a" * 32)
    at.selectbox(key="room_remove_person_pick").set_value(ada).run()
    assert not [button for button in at.button if button.key == "room_remove_yes"]  # picking asks nothing yet
    at.button(key="room_remove_person").click().run()
    assert any("all 2 entries of \\*\\*Ada\\*\\*" in warning.value for warning in at.warning)  # the latest name, as typed
    at.button(key="room_remove_yes").click().run()
    assert any("Removed 2 leaderboard entries" in message.value for message in at.success)
    assert board.entries() == []
