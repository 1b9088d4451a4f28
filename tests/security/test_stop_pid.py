"""`openrecipe stop` signals only the run its job.json describes, never a process that reused the PID."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from typer.testing import CliRunner

from openrecipe.cli.main import app
from openrecipe.recipe.jobs import is_our_job

runner = CliRunner()


def test_stop_refuses_an_unrelated_process(tmp_path):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        (run_dir / "job.json").write_text(json.dumps({"pid": bystander.pid, "run_dir": str(run_dir)}))
        result = runner.invoke(app, ["stop", str(run_dir), "--wait", "1"])
        assert result.exit_code == 2, result.output
        assert "is not this run" in result.output
        assert bystander.poll() is None  # still alive: no signal was sent
    finally:
        bystander.kill()
        bystander.wait()


def test_a_detached_run_is_recognised(tmp_path):
    run_dir = tmp_path / "run"
    script = tmp_path / "openrecipe"  # stands in for `python -m openrecipe run ... --out RUN_DIR`
    ready = tmp_path / "ready"
    script.write_text(f"import pathlib, time\npathlib.Path({str(ready)!r}).touch()\ntime.sleep(60)\n")
    job = subprocess.Popen([sys.executable, str(script), "run", "r.yaml", "--out", str(run_dir)])
    try:
        while not ready.exists():  # the interpreter is up: its command line is final
            assert job.poll() is None
            time.sleep(0.05)
        assert is_our_job(job.pid, {"run_dir": str(run_dir)})
        assert not is_our_job(job.pid, {"run_dir": str(tmp_path / "other")})
    finally:
        job.kill()
        job.wait()
