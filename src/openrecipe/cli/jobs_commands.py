"""Background runs: `run --detach` starts one; `jobs`, `logs` and `stop` follow it."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def register(app: typer.Typer) -> None:
    app.command(help="List background runs started with `run --detach`.")(jobs)
    app.command(help="Show a run's log (-f to follow).")(logs)
    app.command(help="Stop a background run; training saves a checkpoint first.")(stop)


def _registry() -> Path:
    from openrecipe.utils.fs import openrecipe_home

    return openrecipe_home() / "jobs.json"


def _alive(pid: int) -> bool:
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
    registry = _registry()
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


def jobs() -> None:
    registry = _registry()
    known = json.loads(registry.read_text()) if registry.is_file() else []
    table = Table(title="background runs")
    for column in ("run dir", "pid", "state", "started"):
        table.add_column(column)
    for job in known:
        state = "running" if _alive(job["pid"]) else _final_state(Path(job["run_dir"]))
        table.add_row(
            job["run_dir"],
            str(job["pid"]),
            state,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(job["started"])),
        )
    console.print(table)


def _final_state(run_dir: Path) -> str:
    report = run_dir / "report.json"
    return json.loads(report.read_text()).get("status", "?") if report.is_file() else "exited"


def logs(run_dir: Path = typer.Argument(...), follow: bool = typer.Option(False, "-f", "--follow")) -> None:
    from openrecipe.errors import OpenRecipeError

    log = run_dir / "run.log"
    if not log.is_file():
        raise OpenRecipeError(f"{log} does not exist", fix="only runs started with --detach write run.log")
    with open(log, encoding="utf-8", errors="replace") as handle:
        print(handle.read(), end="")
        job = json.loads((run_dir / "job.json").read_text()) if (run_dir / "job.json").is_file() else None
        while follow and job and _alive(job["pid"]):
            chunk = handle.read()
            if chunk:
                print(chunk, end="", flush=True)
            else:
                time.sleep(0.5)
        print(handle.read(), end="")


def stop(run_dir: Path = typer.Argument(...), wait: float = typer.Option(120.0, "--wait")) -> None:
    from openrecipe.errors import OpenRecipeError

    job_path = run_dir / "job.json"
    if not job_path.is_file():
        raise OpenRecipeError(f"no background job in {run_dir}", fix="see `openrecipe jobs`")
    job = json.loads(job_path.read_text())
    pid = job["pid"]
    if not _alive(pid):
        console.print("not running")
        return
    if not is_our_job(pid, job):
        raise OpenRecipeError(
            f"process {pid} named in {job_path} is not this run (the job ended and the PID was reused)",
            fix="nothing to stop; `openrecipe jobs` lists the runs still going",
        )
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + wait
    while time.time() < deadline and _alive(pid):
        time.sleep(0.2)
    console.print("stopped (re-run the same command to resume)" if not _alive(pid) else f"still running (pid {pid})")
