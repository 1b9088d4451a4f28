"""`run --detach` survives on its own; `jobs`, `logs` and `stop` manage it; a stopped run resumes."""

import json
import time

from typer.testing import CliRunner

from openrecipe.cli.main import app
from tests.integration.train.helpers import chat_file, write_recipe

runner = CliRunner()


def test_detach_jobs_logs_stop(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("OPENRECIPE_HOME", str(tmp_path / "home"))
    data = chat_file(tmp_path / "chat.jsonl", count=400)
    recipe = write_recipe(tmp_path, tiny_model_dir, data, epochs=3, save_every_steps=1000)
    run_dir = tmp_path / "run"
    started = runner.invoke(app, ["run", str(recipe), "--out", str(run_dir), "--detach"])
    assert started.exit_code == 0, started.output
    job = json.loads((run_dir / "job.json").read_text())
    metrics = run_dir / "sft" / "metrics.jsonl"
    for _ in range(600):
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    listing = runner.invoke(app, ["jobs"])
    assert str(job["pid"]) in listing.output and "running" in listing.output
    stopped = runner.invoke(app, ["stop", str(run_dir)])
    assert "stopped" in stopped.output
    log = runner.invoke(app, ["logs", str(run_dir)])
    assert "re-run the same command to resume" in log.output
    assert any((run_dir / "sft" / "checkpoints").iterdir())
    assert "exited" in runner.invoke(app, ["jobs"]).output or "failed" in runner.invoke(app, ["jobs"]).output
