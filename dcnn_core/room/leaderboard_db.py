"""The leaderboard's SQLite file: its schema, migrations and connections (WAL mode, schema versioned).

Each call opens its own connection, so any thread may use one ``Database``; writers wait for each
other (``busy_timeout``), and work inside ``transaction()`` holds the write lock until it commits.

A file that cannot be used (not a database, locked for too long, read-only, full, a newer schema) never
breaks a page: every SQLite or file error becomes ``LeaderboardUnavailable``, whose message is one
sentence for the user; the details go to the server log. Nothing here ever deletes or rewrites a file it
cannot read: it may be someone's data.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BUSY_TIMEOUT_MS = 10_000  # how long a writer waits for another one before giving up
MAX_PAGES = 25_600  # the most pages the file may grow to (100 MiB at 4 KiB): a leaderboard never fills the server's disk

# Each entry moves the schema one version up; user_version says how many have been applied.
MIGRATIONS = (
    """
    CREATE TABLE entries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        display_name TEXT NOT NULL,
        owner_hash TEXT NOT NULL,
        run_id TEXT NOT NULL,
        dataset_group TEXT NOT NULL,  -- the data set's key and options as canonical JSON
        dataset_title TEXT NOT NULL,
        spec_json TEXT NOT NULL,
        design_name TEXT NOT NULL,
        summary TEXT NOT NULL,
        config_json TEXT NOT NULL,
        test_accuracy REAL NOT NULL,
        training_s REAL NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (owner_hash, run_id)
    );
    CREATE INDEX entries_by_dataset ON entries (dataset_group, test_accuracy DESC);
    CREATE INDEX entries_by_owner ON entries (owner_hash);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

# What the user reads, by SQLite's primary error name; anything else gets GENERIC.
SENTENCES = {
    "SQLITE_NOTADB": "The leaderboard is unavailable: its file on the server is not a readable leaderboard.",
    "SQLITE_CORRUPT": "The leaderboard is unavailable: its file on the server is not a readable leaderboard.",
    "SQLITE_BUSY": "The leaderboard is unavailable for a moment because it is busy: try again shortly.",
    "SQLITE_LOCKED": "The leaderboard is unavailable for a moment because it is busy: try again shortly.",
    "SQLITE_READONLY": "The leaderboard is unavailable for changes: the server may not write its file.",
    "SQLITE_FULL": "The leaderboard is unavailable for changes: its file or the server's disk is full.",
    "SQLITE_CANTOPEN": "The leaderboard is unavailable: the server cannot open its file.",
    "NEWER_SCHEMA": "The leaderboard is unavailable: its file was written by a newer version of this app.",
}
GENERIC = "The leaderboard is unavailable right now; the server log says why."
UNREADABLE = ("SQLITE_NOTADB", "SQLITE_CORRUPT", "NEWER_SCHEMA")  # files left exactly as they are: they may be someone's data
UNTOUCHED = " The file is left untouched (it may be someone's data): move it away to start a new leaderboard."
_log = logging.getLogger(__name__)


class LeaderboardUnavailable(RuntimeError):
    """The leaderboard's file cannot be used now; ``str()`` is one sentence for the user, ``kind`` SQLite's error name."""

    def __init__(self, sentence: str, kind: str):
        super().__init__(sentence)
        self.kind = kind


def error_kind(error: BaseException) -> str:
    """SQLite's primary error name (``SQLITE_BUSY`` for ``SQLITE_BUSY_SNAPSHOT``), or the exception's class name."""
    name = getattr(error, "sqlite_errorname", None)
    if name:
        return "_".join(name.split("_")[:2])
    return "SQLITE_CANTOPEN" if isinstance(error, OSError) else type(error).__name__


class Database:
    """The SQLite file at ``path``, created and migrated to ``SCHEMA_VERSION`` on first use (and tried again until it works)."""

    def __init__(self, path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS, max_pages: int | None = MAX_PAGES):
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.max_pages = max_pages
        self._migrated = False
        self._migrating = threading.Lock()
        self._reported: str | None = None  # the failure last logged in full, so a refreshing page does not flood the log

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A new connection (rows by column name, autocommit unless a transaction is begun); closed on leaving ``with``.

        Raises LeaderboardUnavailable for any SQLite or file error, in here or in the ``with`` body.
        """
        with self._guarded():
            self._ensure_migrated()
            connection = self._open()
            try:
                yield connection
            finally:
                connection.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A connection holding the write lock (``BEGIN IMMEDIATE``): committed on success, rolled back on any error."""
        with self.connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def execute(self, sql: str, parameters: tuple = ()) -> int:
        """Run one statement on its own; how many rows it changed."""
        with self.connect() as connection:
            return connection.execute(sql, parameters).rowcount

    def fetch(self, sql: str, parameters: tuple = ()) -> list[sqlite3.Row]:
        with self.connect() as connection:
            return connection.execute(sql, parameters).fetchall()

    @property
    def schema_version(self) -> int:
        return self.fetch("PRAGMA user_version")[0][0]

    # --- failures -----------------------------------------------------------------------------

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as error:
            self._migrated = False  # look again next time: the file may have been moved away or replaced meanwhile
            raise self._unavailable(error_kind(error), str(error)) from error
        self._reported = None  # it works (again): the next failure is logged in full

    def _unavailable(self, kind: str, detail: str) -> LeaderboardUnavailable:
        """The error to raise, logged with what the operator needs (once per kind of failure in a row)."""
        if self._reported != kind:
            self._reported = kind
            untouched = UNTOUCHED if kind in UNREADABLE else ""
            _log.error("Leaderboard %s unavailable: %s (%s).%s", self.path, detail, kind, untouched)
        else:
            _log.debug("Leaderboard %s still unavailable: %s (%s).", self.path, detail, kind)
        return LeaderboardUnavailable(SENTENCES.get(kind, GENERIC), kind)

    # --- opening and migrating --------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None)
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            if self.max_pages is not None:
                connection.execute(f"PRAGMA max_page_count = {int(self.max_pages)}")
        except BaseException:
            connection.close()
            raise
        connection.row_factory = sqlite3.Row
        return connection

    def _ensure_migrated(self) -> None:
        if self._migrated:
            return
        with self._migrating:  # one migrator per process; other processes wait on the file's write lock
            if not self._migrated:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._migrate()
                self._migrated = True

    def _migrate(self) -> None:
        """Bring the file to SCHEMA_VERSION; a file already there is only read (so a read-only or busy one still reads)."""
        connection = self._open()
        try:
            if self._version(connection) == SCHEMA_VERSION:
                return
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("BEGIN IMMEDIATE")  # one migrator at a time; the others see the result
            try:
                for number in range(self._version(connection), SCHEMA_VERSION):
                    for statement in MIGRATIONS[number].split(";"):
                        if statement.strip():
                            connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            connection.close()

    def _version(self, connection: sqlite3.Connection) -> int:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise self._unavailable("NEWER_SCHEMA", f"schema version {version}; this app knows up to {SCHEMA_VERSION}")
        return version


__all__ = ["BUSY_TIMEOUT_MS", "MAX_PAGES", "MIGRATIONS", "SCHEMA_VERSION", "Database", "LeaderboardUnavailable", "error_kind"]
