"""The room's leaderboard: published runs in one SQLite file (``dcnn_core.room.leaderboard_db``).

Any thread may call any method (each opens its own connection); the limits are checked inside the
writing transaction, so twenty sessions publishing at once never exceed them. No model weights are
stored: whoever loads a design retrains it. Owners are stored as a hash of their token, never the token itself.
A file that cannot be used raises ``LeaderboardUnavailable`` (one sentence for the user) from any method.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from dcnn_core.design.spec import ModelSpec
from dcnn_core.room.leaderboard_db import BUSY_TIMEOUT_MS, MAX_PAGES, MIGRATIONS, SCHEMA_VERSION, Database, LeaderboardUnavailable  # noqa: F401 -- part of this module's API
from dcnn_core.training.config import TrainConfig

FILE_NAME = "leaderboard.sqlite3"
MAX_NAME_LENGTH = 40  # characters in a display name
MAX_ENTRIES_PER_OWNER = 20  # published runs one attendee may have at once
MAX_ENTRIES = 2000  # in the whole leaderboard
SORT_COLUMNS = {"test_accuracy": "test_accuracy DESC", "training_s": "training_s ASC", "created_at": "created_at DESC"}
DENSE_BASELINE = "Article baseline"


class LeaderboardFull(ValueError):
    """A publish refused by a size limit; the message says which."""


@dataclass(frozen=True)
class Entry:
    """One published run, as read back."""

    entry_id: int
    display_name: str
    owner_hash: str
    dataset_ref: dict  # {"key": ..., "options": {...}}: what to load to train it again
    dataset_title: str
    spec: ModelSpec
    design_name: str
    summary: str
    config: TrainConfig
    test_accuracy: float
    training_s: float
    created_at: float

    @property
    def dense_baseline(self) -> bool:
        """The article's point: dense-only designs (no convolutions) are the baseline to beat."""
        return not self.spec.blocks or self.design_name.removesuffix(" (edited)") == DENSE_BASELINE

    def published_by(self, owner: str) -> bool:
        return bool(owner) and owner_hash(owner) == self.owner_hash


def owner_hash(owner: str) -> str:
    """What the database keeps of an owner token: enough to recognise the author, useless to reattach."""
    return hashlib.sha256(owner.encode()).hexdigest()


class AttendeeNumbers:
    """Names for attendees who have not published one: "Attendee 1", "Attendee 2"… in the order this server first saw them.

    A number stays with its attendee for the server's life (the room view can say "Attendee 3 again"), and says
    nothing of their token; any thread may ask.
    """

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}
        self._lock = threading.Lock()

    def name(self, owner: str) -> str:
        key = owner_hash(owner)
        with self._lock:
            number = self._numbers.setdefault(key, len(self._numbers) + 1)
        return f"Attendee {number}"


def check_display_name(name: str) -> str:
    """The name stripped of outer spaces; ValueError with a message a user can act on."""
    if not isinstance(name, str):
        raise ValueError("The display name must be text.")
    name = name.strip()
    if not name:
        raise ValueError("Enter a display name: it is how the room sees your run.")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"The display name is {len(name)} characters long; keep it to {MAX_NAME_LENGTH}.")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise ValueError("The display name may not contain control or invisible characters (line breaks, tabs, direction marks).")
    return name


def design_summary(spec: ModelSpec, parameters: int | None) -> str:
    """One line: blocks, filters, dense layers, parameters."""
    if spec.blocks:
        filters = "→".join(str(block.filters) for block in spec.blocks)
        parts = [f"{len(spec.blocks)} conv block{'s' if len(spec.blocks) > 1 else ''} ({filters} filters)"]
    else:
        parts = ["no convolutions"]
    if spec.head.dense_units:
        parts.append("dense " + "→".join(str(units) for units in spec.head.dense_units))
    if parameters is not None:
        parts.append(f"{parameters:,} parameters")
    return " · ".join(parts)


def dataset_group(dataset_ref: dict) -> str:
    return json.dumps({"key": str(dataset_ref.get("key", "")), "options": dataset_ref.get("options", {}) or {}}, sort_keys=True)


def entry_row(
    *,
    owner: str,
    run_id: str,
    display_name: str,
    dataset_ref: dict,
    dataset_title: str,
    spec: ModelSpec,
    parameters: int | None,
    config: TrainConfig,
    test_accuracy: float,
    training_s: float,
) -> dict:
    """A run to publish, checked and as its database row; ValueError with a message a user can act on."""
    name = check_display_name(display_name)
    if not owner:
        raise ValueError("Only a signed-in session can publish.")
    if not 0.0 <= float(test_accuracy) <= 1.0:
        raise ValueError("A published run needs a test accuracy from 0 to 1.")
    return {
        "display_name": name,
        "owner_hash": owner_hash(owner),
        "run_id": run_id,
        "dataset_group": dataset_group(dataset_ref),
        "dataset_title": str(dataset_title)[:200],
        "spec_json": json.dumps(spec.to_dict()),
        "design_name": spec.name[:200],
        "summary": design_summary(spec, parameters),
        "config_json": json.dumps(config.to_dict()),
        "test_accuracy": float(test_accuracy),
        "training_s": float(training_s),
        "created_at": time.time(),
    }


class Leaderboard:
    """Published runs in ``path``; created (and migrated) on first use."""

    def __init__(self, path: Path | str, max_per_owner: int = MAX_ENTRIES_PER_OWNER, max_entries: int = MAX_ENTRIES, *,
                 busy_timeout_ms: int = BUSY_TIMEOUT_MS, max_pages: int | None = MAX_PAGES):  # fmt: skip
        self.path = Path(path)
        self.max_per_owner = max_per_owner
        self.max_entries = max_entries
        self._database = Database(self.path, busy_timeout_ms=busy_timeout_ms, max_pages=max_pages)

    @property
    def schema_version(self) -> int:
        return self._database.schema_version

    # --- writing ----------------------------------------------------------------------------

    def publish(self, **fields) -> Entry:
        """Add a run (or rename it, if this owner published it already); ``fields`` as ``entry_row``; raises ValueError."""
        row = entry_row(**fields)
        with self._database.transaction() as connection:  # the counts checked below hold until COMMIT
            existing = connection.execute(
                "SELECT id FROM entries WHERE owner_hash = ? AND run_id = ?", (row["owner_hash"], row["run_id"])
            ).fetchone()
            if existing is not None:
                connection.execute("UPDATE entries SET display_name = ? WHERE id = ?", (row["display_name"], existing["id"]))
                entry_id = existing["id"]
            else:
                self._check_room(connection, row["owner_hash"])
                columns = ", ".join(row)
                cursor = connection.execute(f"INSERT INTO entries ({columns}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))
                entry_id = cursor.lastrowid
            return _entry(connection.execute("SELECT * FROM entries WHERE id = ?", (entry_id,)).fetchone())

    def _check_room(self, connection: sqlite3.Connection, owner: str) -> None:
        mine = connection.execute("SELECT COUNT(*) FROM entries WHERE owner_hash = ?", (owner,)).fetchone()[0]
        if mine >= self.max_per_owner:
            raise LeaderboardFull(f"You have {mine} runs on the leaderboard, the most one person may publish: withdraw one first.")
        total = connection.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        if total >= self.max_entries:
            raise LeaderboardFull(f"The leaderboard is full ({total} runs). Ask the instructor to clear it.")

    def withdraw(self, entry_id: int, owner: str) -> bool:
        """Remove an entry, only for its author; True if one was removed."""
        return self._database.execute("DELETE FROM entries WHERE id = ? AND owner_hash = ?", (int(entry_id), owner_hash(owner))) > 0

    def remove(self, entry_id: int) -> bool:
        """Remove one entry, whoever published it (the instructor's button); True if it was there."""
        return self._database.execute("DELETE FROM entries WHERE id = ?", (int(entry_id),)) > 0

    def remove_owner(self, owner_hash: str) -> int:
        """Remove every entry of one person, named by their ``Entry.owner_hash`` (the instructor's button); how many."""
        return self._database.execute("DELETE FROM entries WHERE owner_hash = ?", (str(owner_hash),))

    def clear(self) -> int:
        """Remove every entry (the instructor's button); returns how many there were."""
        return self._database.execute("DELETE FROM entries")

    # --- reading ----------------------------------------------------------------------------

    def _read(self, sql: str, parameters: tuple = ()) -> list[Entry]:
        return [_entry(row) for row in self._database.fetch(sql, parameters)]

    def load(self, entry_id: int) -> Entry | None:
        """One entry, with its design and training settings ready to use."""
        found = self._read("SELECT * FROM entries WHERE id = ?", (int(entry_id),))
        return found[0] if found else None

    def entries(self) -> list[Entry]:
        return self._read("SELECT * FROM entries ORDER BY test_accuracy DESC, created_at ASC")

    def best_by_dataset(self, sort_by: str = "test_accuracy", limit: int = 50) -> dict[str, list[Entry]]:
        """Data set title → its best ``limit`` entries, sorted by ``sort_by`` (see SORT_COLUMNS)."""
        if sort_by not in SORT_COLUMNS:
            raise ValueError(f"Sort by one of {', '.join(SORT_COLUMNS)}.")
        best = self._read(
            "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY dataset_group ORDER BY test_accuracy DESC, created_at ASC) AS rank"
            f" FROM entries) WHERE rank <= ? ORDER BY dataset_title, {SORT_COLUMNS[sort_by]}, id",
            (int(limit),),
        )
        grouped: dict[str, list[Entry]] = {}
        for entry in best:
            grouped.setdefault(entry.dataset_title, []).append(entry)
        return grouped

    def display_names(self) -> dict[str, str]:
        """Owner hash → the name of their latest published run."""
        rows = self._database.fetch("SELECT owner_hash, display_name FROM entries ORDER BY created_at")
        return {row["owner_hash"]: row["display_name"] for row in rows}

    def published_runs(self, owner: str) -> dict[str, str]:
        """This owner's published run ids → their display names, oldest first (one query, for the publish list)."""
        sql = "SELECT run_id, display_name FROM entries WHERE owner_hash = ? ORDER BY created_at, id"
        rows = self._database.fetch(sql, (owner_hash(owner),))
        return {row["run_id"]: row["display_name"] for row in rows}

    def published_run(self, owner: str, run_id: str) -> Entry | None:
        found = self._read("SELECT * FROM entries WHERE owner_hash = ? AND run_id = ?", (owner_hash(owner), run_id))
        return found[0] if found else None


def _entry(row: sqlite3.Row) -> Entry:
    group = json.loads(row["dataset_group"])
    return Entry(
        entry_id=row["id"],
        display_name=row["display_name"],
        owner_hash=row["owner_hash"],
        dataset_ref={"key": group["key"], "options": group["options"]},
        dataset_title=row["dataset_title"],
        spec=ModelSpec.from_dict(json.loads(row["spec_json"])),
        design_name=row["design_name"],
        summary=row["summary"],
        config=TrainConfig.from_dict(json.loads(row["config_json"])),
        test_accuracy=row["test_accuracy"],
        training_s=row["training_s"],
        created_at=row["created_at"],
    )


__all__ = [
    "AttendeeNumbers", "Entry", "Leaderboard", "LeaderboardFull", "LeaderboardUnavailable", "check_display_name", "dataset_group",
    "design_summary", "entry_row", "owner_hash",
]  # fmt: skip
