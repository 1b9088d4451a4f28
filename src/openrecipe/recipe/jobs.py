"""Background runs (`openrecipe run --detach`): start one in its own session, list, and check it is ours.

The CLI (`jobs`, `logs`, `stop`) and the workbench both drive runs through these functions.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def job_registry() -> Path:
    from openrecipe.utils.fs import openrecipe_home

    return openrecipe_home() / "jobs.json"


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (finished, not yet reaped) is not running
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def start_detached(argv: list[str], run_dir: Path) -> int:
    """Run `openrecipe run ...` in a new session so it survives the terminal closing."""
    import subprocess
    import sys

    from openrecipe.utils.fs import atomic_write_json

    run_dir.mkdir(parents=True, exist_ok=True)
    log = open(run_dir / "run.log", "ab")  # noqa: SIM115 (handed to the child)
    process = subprocess.Popen(
        [sys.executable, "-m", "openrecipe", *argv],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "COLUMNS": "100"},
    )
    job = {"pid": process.pid, "run_dir": str(run_dir.resolve()), "started": time.time(), "argv": argv}
    atomic_write_json(run_dir / "job.json", job)
    registry = job_registry()
    known = json.loads(registry.read_text()) if registry.is_file() else []
    atomic_write_json(registry, [j for j in known if j["run_dir"] != job["run_dir"]] + [job])
    return process.pid


def is_our_job(pid: int, job: dict) -> bool:
    """The process runs `openrecipe` with this job's run folder on its command line (Linux /proc)."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = [part.decode("utf-8", "replace") for part in arguments if part]
    target = Path(str(job.get("run_dir", ""))).resolve()
    return "openrecipe" in " ".join(words[:3]) and any(Path(word).resolve() == target for word in words[3:])
