"""Build tiny SFT recipes and run them in subprocesses (so they can be killed for real)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from safetensors.torch import load_file


def chat_file(path: Path, count: int = 40) -> Path:
    rows = []
    for i in range(count):
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"What is item {i}?"},
                    {"role": "assistant", "content": f"Item {i} is a {'red' if i % 2 else 'blue'} box."},
                ]
            }
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_recipe(folder: Path, model_dir: Path, data: Path, **train) -> Path:
    settings = {
        "epochs": 2,
        "batch_size": 4,
        "micro_batch_size": 2,
        "learning_rate": 5e-3,
        "precision": "fp32",
        "save_every_steps": 3,
        "eval_fraction": 0.0,
        "lora": {"rank": 4, "alpha": 8, "dropout": 0.1},
        "schedule": {"kind": "cosine", "warmup_steps": 2},
    }
    settings.update(train)
    recipe = {
        "name": "resume-test",
        "seed": 3,
        "base_model": str(model_dir),
        "stages": [
            {
                "id": "sft",
                "kind": "sft",
                "data": [{"path": str(data)}],
                "train": settings,
                "probes": {"identity": False},
                "tokenize": {"max_length": 64},
            }
        ],
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def run_cli(args: list[str], fault: str | None = None, check: bool = True, **popen) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENRECIPE_FAULT": fault or ""}
    result = subprocess.run(
        [sys.executable, "-m", "openrecipe", *args], env=env, capture_output=True, text=True, **popen
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "sft" / "metrics.jsonl").read_text().splitlines()]


def weights(run_dir: Path, method: str) -> dict:
    if method == "lora":
        return load_file(str(run_dir / "sft" / "adapter" / "adapter_model.safetensors"))
    return load_file(str(run_dir / "sft" / "model" / "model.safetensors"))


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype
        assert a[key].equal(b[key]), f"{key} differs"
