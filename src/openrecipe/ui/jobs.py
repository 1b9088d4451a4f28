"""Runs launched from the browser: the same detached job as `openrecipe run --detach`, watched from the server.

A watcher copies new lines of `run.log`, each stage's `metrics.jsonl` and changes of `report.json` into the
event table, remembering file offsets in the same transaction; a restarted `ui` continues from those
offsets, so no line is lost or repeated whatever happens to the browser or to this process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from openrecipe.ui.store import Store

log = logging.getLogger("openrecipe.ui")
POLL_SECONDS = 0.2
MAX_CHUNK = 1 << 20


def launch(store: Store, recipe_path: Path, run_dir: Path, name: str, overrides: list[str] | None = None) -> int:
    """Start `openrecipe run RECIPE --out RUN_DIR` detached (same code path as `--detach`) and record the job."""
    from openrecipe.recipe.jobs import start_detached

    argv = ["run", str(recipe_path.resolve()), *(overrides or []), "--out", str(run_dir.resolve())]
    pid = start_detached(argv, run_dir)
    return store.add_job(name, str(run_dir.resolve()), str(recipe_path.resolve()), argv, pid)


def resume(store: Store, job_id: int) -> int:
    """Re-run the same command: finished stages are reused and training resumes from its checkpoint."""
    from openrecipe.recipe.jobs import start_detached

    job = store.job(job_id)
    assert job is not None
    if is_alive(job["pid"]):
        return job["pid"]
    pid = start_detached(json.loads(job["argv"]), Path(job["run_dir"]))
    with store.transaction() as db:
        db.execute("UPDATE jobs SET pid = ?, state = 'running', finished = NULL WHERE id = ?", (pid, job_id))
        _add_event(db, job_id, "state", {"state": "running", "pid": pid})
    return pid


def adopt_cli_jobs(store: Store, workspace: Path) -> int:
    """Runs started with `openrecipe run --detach` into this workspace's runs/ join the job table too."""
    from openrecipe.recipe.jobs import job_registry

    registry = job_registry()
    if not registry.is_file():
        return 0
    try:
        entries = json.loads(registry.read_text())
    except (OSError, json.JSONDecodeError):
        return 0
    known = {job["run_dir"] for job in store.jobs()}
    runs = (workspace / "runs").resolve()
    adopted = 0
    for entry in entries:
        run_dir = Path(entry["run_dir"])
        if entry["run_dir"] in known or runs not in run_dir.parents:
            continue
        argv = entry.get("argv") or []
        recipe = argv[1] if len(argv) > 1 else ""
        store.add_job(run_dir.name, entry["run_dir"], recipe, argv, int(entry["pid"]))
        adopted += 1
    return adopted


def stop(store: Store, job_id: int) -> None:
    """What `openrecipe stop` does: SIGTERM, so training saves a checkpoint before it exits."""
    job = store.job(job_id)
    if job and is_alive(job["pid"]):
        os.kill(job["pid"], signal.SIGTERM)


def is_alive(pid: int | None) -> bool:
    from openrecipe.recipe.jobs import is_alive as process_alive

    return bool(pid) and process_alive(int(pid))


def _add_event(db, job_id: int, kind: str, data: dict[str, Any]) -> None:
    db.execute(
        "INSERT INTO events (job_id, kind, data, created) VALUES (?, ?, ?, ?)",
        (job_id, kind, json.dumps(data, ensure_ascii=False), time.time()),
    )


def _offsets(store: Store, job_id: int) -> dict[str, tuple[int, str | None]]:
    rows = store.query("SELECT file, position, digest FROM offsets WHERE job_id = ?", (job_id,))
    return {row["file"]: (row["position"], row["digest"]) for row in rows}


def _new_lines(path: Path, position: int) -> tuple[list[str], int]:
    """Complete lines after `position`; a half-written last line waits for the next poll."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return [], position
    if size < position:  # the file was replaced: start over
        position = 0
    if size == position:
        return [], position
    with open(path, "rb") as handle:
        handle.seek(position)
        chunk = handle.read(min(size - position, MAX_CHUNK))
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], position
    lines = chunk[:end].decode("utf-8", errors="replace").split("\n")
    return lines, position + end + 1


def poll_job(store: Store, job: dict[str, Any]) -> int:
    """Copy whatever is new for one job into the event table; returns the number of events added."""
    run_dir = Path(job["run_dir"])
    offsets = _offsets(store, job["id"])
    added: list[tuple[str, dict[str, Any]]] = []
    updates: list[tuple[str, int, str | None]] = []
    sources = [("run.log", run_dir / "run.log")]
    sources += [(f"{p.parent.name}/metrics.jsonl", p) for p in sorted(run_dir.glob("*/metrics.jsonl"))]
    for key, path in sources:
        position = offsets.get(key, (0, None))[0]
        lines, new_position = _new_lines(path, position)
        if new_position == position:
            continue
        for line in lines:
            if key == "run.log":
                added.append(("log", {"line": line}))
            else:
                try:
                    added.append(("metric", {"stage": path.parent.name, **json.loads(line)}))
                except json.JSONDecodeError:
                    continue
        updates.append((key, new_position, None))
    report = run_dir / "report.json"
    if report.is_file():
        text = report.read_bytes()
        digest = hashlib.sha256(text).hexdigest()
        if offsets.get("report.json", (0, None))[1] != digest:
            try:
                added.append(("stages", json.loads(text)))
                updates.append(("report.json", len(text), digest))
            except json.JSONDecodeError:
                pass
    finished = job["state"] == "running" and not is_alive(job["pid"]) and not added
    if not added and not finished:
        return 0
    with store.transaction() as db:
        for kind, data in added:
            _add_event(db, job["id"], kind, data)
        for key, position, digest in updates:
            db.execute(
                "INSERT INTO offsets (job_id, file, position, digest) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (job_id, file) DO UPDATE SET position = excluded.position, digest = excluded.digest",
                (job["id"], key, position, digest),
            )
        if finished:
            state = _final_state(run_dir)
            db.execute("UPDATE jobs SET state = ?, finished = ? WHERE id = ?", (state, time.time(), job["id"]))
            _add_event(db, job["id"], "state", {"state": state})
    return len(added) + int(finished)


def _final_state(run_dir: Path) -> str:
    """finished, failed, or stopped (SIGTERM saved a checkpoint: a re-run resumes)."""
    try:
        report = json.loads((run_dir / "report.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "exited"
    status = report.get("status")
    if status == "ok":
        return "finished"
    interrupted = any("re-run the same command to resume" in str(s.get("error", "")) for s in report.get("stages", []))
    if status == "running" or interrupted:
        return "stopped"
    return status or "exited"


class Watcher:
    """Polls every running job (and drains finished ones once) from a background task."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.changed = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    def poll_once(self) -> int:
        total = 0
        for job in self.store.query("SELECT * FROM jobs WHERE state = 'running'"):
            total += poll_job(self.store, job)
        return total

    async def _loop(self) -> None:
        while True:
            try:
                if await asyncio.to_thread(self.poll_once):
                    self.changed.set()
                    self.changed = asyncio.Event()
            except Exception:
                log.exception("job watcher")
            await asyncio.sleep(POLL_SECONDS)
