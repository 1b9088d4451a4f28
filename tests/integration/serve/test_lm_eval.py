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


def test_lm_eval_local_completions_loglikelihood_task(tmp_path, tiny_model_dir):
    """A multiple-choice task scores each choice by log-likelihood: echo + logprobs over token-id prompts."""
    rows = [
        {"question": "The sky is", "choices": ["blue", "a spoon"], "answer": 0},
        {"question": "Two plus two is", "choices": ["four", "green"], "answer": 0},
        {"question": "Cats like", "choices": ["fish", "taxes"], "answer": 0},
    ]
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "tiny_mc.yaml").write_text(
        "task: tiny_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {tmp_path / 'mc.jsonl'}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: answer\n'
        "metric_list:\n  - metric: acc\n"
    )
    with running_server(model=str(tiny_model_dir), max_tokens_cap=64) as (base, _):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "lm_eval",
                "--model",
                "local-completions",
                "--tasks",
                "tiny_mc",
                "--include_path",
                str(tmp_path / "tasks"),
                "--model_args",
                f"model=tiny,base_url={base}/v1/completions,num_concurrent=1,max_retries=1,"
                f"tokenizer_backend=huggingface,tokenizer={tiny_model_dir}",
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
    scores = json.loads(results.read_text())["results"]["tiny_mc"]
    assert 0.0 <= scores["acc,none"] <= 1.0
