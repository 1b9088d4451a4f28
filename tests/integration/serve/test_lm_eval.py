"""lm-evaluation-harness against `openrecipe serve`, with the task shipped in eval/lm_eval_tasks."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.serve.conftest import running_server

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.skipif(importlib.util.find_spec("lm_eval") is None, reason="lm-eval is not installed")


def test_lm_eval_local_chat_completions_runs_the_shipped_task(tmp_path, tiny_model_dir):
    with running_server(model=str(tiny_model_dir), max_tokens_cap=64) as (base, _):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "lm_eval",
                "--model",
                "local-chat-completions",
                "--tasks",
                "acme_support",
                "--include_path",
                str(REPO / "eval" / "lm_eval_tasks"),
                "--apply_chat_template",
                "--limit",
                "3",
                "--model_args",
                f"model=tiny,base_url={base}/v1/chat/completions,num_concurrent=1,max_retries=1,tokenizer_backend=None",
                "--output_path",
                str(tmp_path / "out"),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            env={"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
        )
    assert result.returncode == 0, result.stderr[-3000:]
    results = next((tmp_path / "out").rglob("results_*.json"))
    scores = json.loads(results.read_text())["results"]["acme_support"]
    assert "contains_reference,none" in scores
