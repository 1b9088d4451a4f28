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

from openrecipe.recipe.jobs import is_alive, is_our_job, job_registry

console = Console()


def register(app: typer.Typer) -> None:
    app.command(help="List background runs started with `run --detach`.")(jobs)
    app.command(help="Show a run's log (-f to follow).")(logs)
    app.command(help="Stop a background run; training saves a checkpoint first.")(stop)


def jobs() -> None:
    registry = job_registry()
    known = json.loads(registry.read_text()) if registry.is_file() else []
    table = Table(title="background runs")
    for column in ("run dir", "pid", "state", "started"):
        table.add_column(column)
    for job in known:
        state = "running" if is_alive(job["pid"]) else _final_state(Path(job["run_dir"]))
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
        while follow and job and is_alive(job["pid"]):
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
    if not is_alive(pid):
        console.print("not running")
        return
    if not is_our_job(pid, job):
        raise OpenRecipeError(
            f"process {pid} named in {job_path} is not this run (the job ended and the PID was reused)",
            fix="nothing to stop; `openrecipe jobs` lists the runs still going",
        )
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + wait
    while time.time() < deadline and is_alive(pid):
        time.sleep(0.2)
    console.print("stopped (re-run the same command to resume)" if not is_alive(pid) else f"still running (pid {pid})")
