"""Every stage kind × every reference form that `validate` accepts actually runs (the refusals are in
tests/unit/recipe/test_references.py).

One project holds the tiny model as a recipe-relative folder, at an absolute path, as the converted default
model (in `$OPENRECIPE_HOME`) and as a hub id in an offline Hugging Face cache, so every form resolves
without a network. The runs go through the real CLI in a subprocess, so the hub cache and offline mode are
read exactly as a user's shell sets them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from openrecipe.provenance.records import RunRecord

TRAIN = {"max_steps": 1, "batch_size": 2, "precision": "fp32"}
TRAINING = {"sft", "cpt", "merge"}
FULL_WEIGHTS = TRAINING | {"quantize", "export"}  # these refuse a torchao-quantized folder at validation
KINDS = ["sft", "cpt", "generate", "quantize", "export", "merge", "eval", "parity"]
UPSTREAM = [
    {"id": "data", "kind": "clean", "sources": [{"path": "faq.jsonl"}]},
    {
        "id": "tuned",
        "kind": "sft",
        "data": [{"path": "stage:data"}],
        "train": TRAIN,
        "probes": {"identity": False},
        "tokenize": {"max_length": 64},
    },
    {"id": "quant", "kind": "quantize", "model": "stage:tuned", "methods": ["int8"]},
    {"id": "gguf", "kind": "export", "model": "stage:tuned", "gguf": ["q8_0"]},
]
HUB_SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def forms(root: Path) -> dict[str, str]:
    return {
        "base": "base",
        "default": "default",
        "stage": "stage:tuned",
        "stage-artifact": "stage:tuned/model",
        "stage-gguf": "stage:gguf/gguf_q8_0",
        "stage-int8": "stage:quant/int8",
        "relative": "models/tiny",
        "dot-relative": "./models/tiny",
        "absolute": str(root / "elsewhere" / "model"),
        "hub": "owner/name",
    }


def case(kind: str, reference: str) -> dict:
    return {
        "sft": {
            "kind": "sft",
            "model": reference,
            "data": [{"path": "stage:data"}],
            "train": TRAIN,
            "probes": {"identity": False},
            "tokenize": {"max_length": 64},
        },
        "cpt": {
            "kind": "cpt",
            "model": reference,
            "domain": [{"path": "stage:data"}],
            "replay_ratio": 0,
            "block_size": 32,
            "train": TRAIN,
        },
        "generate": {"kind": "generate", "model": reference, "prompts": ["hi"], "max_new_tokens": 2},
        "quantize": {"kind": "quantize", "model": reference, "methods": ["int8"]},
        "export": {"kind": "export", "model": reference, "gguf": ["q8_0"]},
        # A copy of the base model is the merge's base, so no form names the same model twice.
        "merge": {
            "kind": "merge",
            "method": "linear",
            "base": "models/tiny-copy",
            "models": [{"model": reference, "weight": 0.5}],
        },
        "eval": {"kind": "eval", "variants": [{"name": "v", "model": reference}], "tests": ["t.jsonl"]},
        "parity": {
            "kind": "parity",
            "reference": reference,
            "artifacts": [{"name": "a", "model": "stage:tuned"}],
            "max_new_tokens": 2,
            "on_regression": "warn",
            "identity_prompts": False,
        },
    }[kind]


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model_dir) -> Path:
    root = tmp_path_factory.mktemp("forms")
    folder = root / "project"
    for place in (
        folder / "models" / "tiny",
        folder / "models" / "tiny-copy",
        root / "elsewhere" / "model",
        root / "home" / "models" / "SmolLM2-135M-Instruct",  # what `default` resolves to
        root / "hf" / "hub" / "models--owner--name" / "snapshots" / HUB_SNAPSHOT,
    ):
        shutil.copytree(tiny_model_dir, place)
    (root / "hf" / "hub" / "models--owner--name" / "refs").mkdir()
    (root / "hf" / "hub" / "models--owner--name" / "refs" / "main").write_text(HUB_SNAPSHOT)
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"What is item {i}?"},
                {"role": "assistant", "content": f"Item {i} is widget number {i}."},
            ]
        }
        for i in range(12)
    ]
    (folder / "faq.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    tests = [
        {
            "id": f"i{i}",
            "prompt": f"What is item {i}?",
            "references": [f"widget number {i}"],
            "metric": "contains",
            "domain": "faq",
            "max_new_tokens": 4,
        }
        for i in range(3)
    ]
    (folder / "t.jsonl").write_text("".join(json.dumps(row) + "\n" for row in tests))
    return folder


def run_cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    root = project.parent
    env = {
        **os.environ,
        "OPENRECIPE_HOME": str(root / "home"),
        "HF_HOME": str(root / "hf"),
        "HF_HUB_OFFLINE": "1",
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run(
        [sys.executable, "-m", "openrecipe", *args], cwd=project, env=env, capture_output=True, text=True
    )


def accepted() -> list[tuple[str, str]]:
    """(kind, form) pairs `validate` accepts; stage:quant/int8 is refused where full weights are needed."""
    names = forms(Path("/"))
    return [(kind, name) for kind in KINDS for name in names if not (name == "stage-int8" and kind in FULL_WEIGHTS)]


@pytest.fixture(scope="module")
def run(project) -> tuple[RunRecord, str]:
    """One recipe with a stage per accepted (kind, form), run once through the CLI."""
    references = forms(project.parent)
    stages = [*UPSTREAM, *({"id": f"{kind}-{name}", **case(kind, references[name])} for kind, name in accepted())]
    (project / "recipe.yaml").write_text(
        yaml.safe_dump({"name": "forms", "seed": 0, "base_model": "models/tiny", "stages": stages}, sort_keys=False)
    )
    checked = run_cli(project, "validate", "recipe.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    done = run_cli(project, "run", "recipe.yaml", "--out", "run")
    return RunRecord.load(project / "run"), done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.parametrize(("kind", "form"), accepted())
def test_every_accepted_reference_form_runs(project, run, kind, form):
    record, output = run
    stage = record.stage(f"{kind}-{form}")
    assert stage is not None and stage.status == "ok", output
    assert stage.artifacts, stage
    for name in stage.artifacts:
        assert stage.path_of(name, project / "run").exists(), (stage.id, name)
