"""The workbench's server-side state in one SQLite file: jobs, their event log, sessions, credentials, servers.

Everything a page shows is read from here, so closing the tab or restarting the `ui` process loses nothing.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    run_dir TEXT NOT NULL,
    recipe TEXT NOT NULL,
    argv TEXT NOT NULL,
    pid INTEGER,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS offsets (
    job_id INTEGER NOT NULL,
    file TEXT NOT NULL,
    position INTEGER NOT NULL,
    digest TEXT,
    PRIMARY KEY (job_id, file)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_job ON events (job_id, id);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS credentials (
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    hash TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (name, kind)
);
CREATE TABLE IF NOT EXISTS opened_files (
    path TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS servers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    artifact TEXT NOT NULL,
    port INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    key_hash TEXT NOT NULL,
    created REAL NOT NULL
);
"""


class Store:
    """Thread-safe access to the SQLite file (WAL, so the SSE readers never block the watcher)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
        self._connection.row_factory = sqlite3.Row
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.executescript(SCHEMA)
        self._connection.commit()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._connection
                self._connection.commit()
            except BaseException:
                self._connection.rollback()
                raise

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(row) for row in self._connection.execute(sql, params).fetchall()]

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    # jobs --------------------------------------------------------------------------------------
    def add_job(self, name: str, run_dir: str, recipe: str, argv: list[str], pid: int) -> int:
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO jobs (name, run_dir, recipe, argv, pid, state, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, run_dir, recipe, json.dumps(argv), pid, "running", time.time()),
            )
            job_id = int(cursor.lastrowid)
            db.execute(
                "INSERT INTO events (job_id, kind, data, created) VALUES (?, 'state', ?, ?)",
                (job_id, json.dumps({"state": "running", "pid": pid}), time.time()),
            )
            return job_id

    def job(self, job_id: int) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    def jobs(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM jobs ORDER BY id DESC")

    def events_after(self, job_id: int, after: int, limit: int = 1000) -> list[dict[str, Any]]:
        return self.query(
            "SELECT id, kind, data FROM events WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?",
            (job_id, after, limit),
        )
