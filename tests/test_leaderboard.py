"""The leaderboard: a real SQLite file (core), and the pages that publish, show, load and clear it (AppTest)."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from dcnn_core import leaderboard, spec
from dcnn_core.leaderboard import Leaderboard, LeaderboardFull
from dcnn_core.training_config import TrainConfig

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
    assert loaded.summary == "2 conv blocks (32→64 filters) · dense 128 · 1,234 parameters"
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
