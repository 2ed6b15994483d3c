"""Optional durability for the store: one JSON snapshot in a SQLite file, rewritten on every mutation.

Why a snapshot and not real tables: the emulator's state is small (a demo holds tens of objects) and
its shape follows the GraphQL types, which change with the schema. A single row written in one
transaction is atomic (a crash leaves the previous snapshot), needs no migrations, and is enough for
the one thing persistence is for: restarting a demo emulator without losing receivers and ids.
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime
from typing import Any

SNAPSHOT_VERSION = 1


class SnapshotFile:
    """A SQLite file holding the latest snapshot of the store. Not thread-safe: the store's lock guards it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS emulator_snapshot ("
            " id INTEGER PRIMARY KEY CHECK (id = 1),"
            " version INTEGER NOT NULL,"
            " saved_at TEXT NOT NULL,"
            " data TEXT NOT NULL)"
        )

    def load(self) -> dict[str, Any] | None:
        """The saved snapshot, or None for a new file."""
        row = self._db.execute("SELECT version, data FROM emulator_snapshot WHERE id = 1").fetchone()
        if row is None:
            return None
        version, data = row
        if version != SNAPSHOT_VERSION:
            raise RuntimeError(
                f"State file {self.path} has snapshot version {version}, this emulator reads "
                f"{SNAPSHOT_VERSION}; delete the file to start afresh"
            )
        return json.loads(data)

    def save(self, snapshot: dict[str, Any]) -> None:
        """Replace the snapshot in one transaction."""
        data = json.dumps(snapshot, separators=(",", ":"))
        saved_at = datetime.now(UTC).isoformat()
        self._db.execute(
            "INSERT INTO emulator_snapshot (id, version, saved_at, data) VALUES (1, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version, saved_at = excluded.saved_at,"
            " data = excluded.data",
            (SNAPSHOT_VERSION, saved_at, data),
        )

    def close(self) -> None:
        self._db.close()
