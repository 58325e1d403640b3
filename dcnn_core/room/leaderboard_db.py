"""The leaderboard's SQLite file: its schema, migrations and connections (WAL mode, schema versioned).

Each call opens its own connection, so any thread may use one ``Database``; writers wait for each
other (``busy_timeout``), and work inside ``transaction()`` holds the write lock until it commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

BUSY_TIMEOUT_MS = 10_000  # how long a writer waits for another one before giving up

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


class Database:
    """The SQLite file at ``path``, created and migrated to ``SCHEMA_VERSION`` when opened."""

    def __init__(self, path: Path):
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    def connect(self) -> closing[sqlite3.Connection]:
        """A new connection (rows by column name, autocommit unless a transaction is begun); closed on leaving ``with``."""
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        connection.row_factory = sqlite3.Row
        return closing(connection)

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

    def _migrate(self) -> None:
        with self.connect() as connection:
            connection.execute("PRAGMA journal_mode = WAL")
        with self.transaction() as connection:  # one migrator at a time; the others see the result
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} has schema version {version}; this app knows up to {SCHEMA_VERSION}.")
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


__all__ = ["BUSY_TIMEOUT_MS", "MIGRATIONS", "SCHEMA_VERSION", "Database"]
