"""The stage cache tells the truth: a changed artifact, or a run killed mid-stage, means the stage runs again;
temporary files of killed writers are removed by the next run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from openrecipe.provenance.records import artifact_sha256
from openrecipe.recipe.runner import run_recipe
from openrecipe.recipe.schema import load_recipe


def clean_recipe(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(6)
    ]
    (folder / "faq.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = folder / "recipe.yaml"
    path.write_text(
        yaml.safe_dump({"name": "c", "stages": [{"id": "c", "kind": "clean", "sources": [{"path": "faq.jsonl"}]}]})
    )
    return path


def run(recipe: Path, out: Path) -> dict:
    return run_recipe(load_recipe(recipe), out, recipe_dir=recipe.parent)


def test_an_artifact_changed_in_place_reruns_the_stage(tmp_path):
    recipe = clean_recipe(tmp_path / "project")
    out = tmp_path / "run"
    run(recipe, out)
    data = out / "c" / "data.jsonl"
    original = data.read_bytes()
    data.write_bytes(original.replace(b"a1", b"b1"))  # same size, other content
    assert run(recipe, out)["stages"][0]["status"] == "ok"
    assert data.read_bytes() == original
    assert run(recipe, out)["stages"][0]["status"] == "cached"
    os.utime(data, ns=(1, 1))  # only the time changed: the hash decides, and it matches
    assert run(recipe, out)["stages"][0]["status"] == "cached"


def test_records_hold_kind_size_and_hash(tmp_path):
    recipe = clean_recipe(tmp_path / "project")
    report = run(recipe, tmp_path / "run")
    files = report["stages"][0]["files"]
    assert files["data"]["kind"] == "data"
    assert files["data"]["bytes"] == (tmp_path / "run" / "c" / "data.jsonl").stat().st_size
    assert len(files["data"]["sha256"]) == 64


def test_interrupted_writes_are_removed_by_the_next_run(tmp_path):
    recipe = clean_recipe(tmp_path / "project")
    out = tmp_path / "run"
    run(recipe, out)
    leftovers = [out / ".partial-c" / "data.jsonl", out / "c" / ".data.jsonl.k3j2.tmp", out / ".tmp-x-1" / "f"]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half")
    run(recipe, out)
    assert not any(path.exists() for path in leftovers)
    assert not (out / ".partial-c").exists() and not (out / ".tmp-x-1").exists()


DRIVER = """
import os, signal, sys
import openrecipe.{module} as target
real = getattr(target, "{function}")

def killed(*args, **kwargs):
    result = real(*args, **kwargs)
    if os.environ.get("KILL_MID_STAGE"):
        os.kill(os.getpid(), signal.SIGKILL)  # after the files are written, before the stage finishes
    return result

setattr(target, "{function}", killed)
from openrecipe.cli.main import main
sys.argv = ["openrecipe", *sys.argv[1:]]
main()
"""

STAGES = {
    "quantize": ("quantize.torchao_backend", "quantize_folder", {"kind": "quantize", "methods": ["int8"]}),
    "export": ("export.gguf_export", "export_gguf", {"kind": "export", "gguf": ["q8_0"], "modelfile": False}),
}


@pytest.mark.slow  # three fresh processes, each importing torch
@pytest.mark.parametrize("kind", list(STAGES))
def test_kill_mid_stage_then_rerun_the_original_runs_it_again(tmp_path, tiny_model_dir, tiny_model_dir_b, kind):
    module, function, stage = STAGES[kind]
    if kind == "export":
        pytest.importorskip("llama_cpp", reason="GGUF export needs llama.cpp (make install)")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(module=module, function=function))
    out = tmp_path / "run"

    def invoke(model: Path, kill: bool) -> subprocess.CompletedProcess:
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(yaml.safe_dump({"name": "k", "base_model": str(model), "stages": [{"id": "s", **stage}]}))
        env = {**os.environ, "KILL_MID_STAGE": "1" if kill else ""}
        return subprocess.run(
            [sys.executable, str(driver), "run", str(recipe), "--out", str(out)],
            env=env,
            capture_output=True,
            text=True,
        )

    first = invoke(tiny_model_dir, kill=False)
    assert first.returncode == 0, first.stderr[-2000:]
    recorded = json.loads((out / "s" / ".stage.json").read_text())["artifacts"]
    killed = invoke(tiny_model_dir_b, kill=True)
    assert killed.returncode == -signal.SIGKILL
    again = invoke(tiny_model_dir, kill=False)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "unchanged" not in again.stdout
    status = json.loads((out / "report.json").read_text())["stages"][0]["status"]
    assert status == "ok"
    now = json.loads((out / "s" / ".stage.json").read_text())["artifacts"]
    assert set(now) == set(recorded)
    for record in now.values():  # the record describes exactly the files on disk
        assert artifact_sha256(out / record["path"]) == record["sha256"]
    assert not (out / ".partial-s").exists()
