"""DeepSpeed ZeRO on CPU (torchrun + gloo, DeepSpeed's CPU accelerator): stages 2 and 3 on two processes follow
the single-process loss curve; their checkpoints hold only the adapter, whole, in the single-process layout; a run
stopped mid-way (both ranks, or kill -9 of one node's rank, which stops the other node) resumes bit for bit on two
processes and continues on one."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import pytest
import yaml
from safetensors.torch import load_file

from tests.integration.train.helpers import assert_bitwise_equal, chat_file, losses, run_cli, weights, write_recipe
from tests.integration.train.test_fsdp import _assert_close, _free_port, _two_nodes, _two_processes, _world_size

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed (make test)"),
]

LORA = {"rank": 4, "alpha": 8, "dropout": 0.0}


@pytest.fixture(scope="module")
def single(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("zero")
    data = chat_file(folder / "chat.jsonl", count=32)
    recipe = write_recipe(folder, tiny_model_dir, data, epochs=1, lora=LORA)
    out = folder / "single"
    run_cli(["run", str(recipe), "--out", str(out)])
    return folder, data, out


def _recipe(folder, tiny_model_dir, data, stage: int):
    distributed = {"strategy": "deepspeed", "zero_stage": stage, "timeout_s": 60}
    return write_recipe(folder, tiny_model_dir, data, epochs=1, lora=LORA, distributed=distributed)


@pytest.mark.parametrize("stage", [2, 3])
def test_two_processes_match_one_and_checkpoints_are_whole_adapters(tmp_path, tiny_model_dir, single, stage):
    _, data, reference = single
    out = tmp_path / f"zero{stage}"
    code, _, stderr = _two_processes(_recipe(tmp_path, tiny_model_dir, data, stage), out)
    assert code == 0, stderr[-3000:]
    assert _world_size(out) == 2
    _assert_close(losses(reference), losses(out))
    adapter = weights(reference, "lora")
    trained = weights(out, "lora")
    assert trained.keys() == adapter.keys()
    for name, tensor in trained.items():
        assert (tensor - adapter[name]).abs().max() < 1e-4
    newest = sorted((out / "sft" / "checkpoints").iterdir())[-1]
    theirs = sorted((reference / "sft" / "checkpoints").iterdir())[-1]
    for part in ("trainable", "optimizer"):
        ours, single_process = (load_file(str(path / f"{part}.safetensors")) for path in (newest, theirs))
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in single_process.items()}
        for name, tensor in ours.items():  # whole tensors, the same values as one process up to float rounding
            assert (tensor - single_process[name]).abs().max() < 1e-4, name
    assert all(".lora_" in name for name in load_file(str(newest / "trainable.safetensors")))


def _stop_then_resume(recipe, out, two_nodes: bool) -> str:
    """Stop a run at step 5, then re-run it; the re-run's output. Two nodes: only the second node's rank is killed
    (kill -9), and the first must stop too. One launcher: both ranks die."""
    if two_nodes:
        first, second = _two_nodes(recipe, out, fault_on_second="step@5")
        assert "Signal 9 (SIGKILL)" in second[1] + second[2], second[2][-3000:]
        assert first[0] != 0 and second[0] != 0  # the surviving node stopped too: no hang
        outputs = _two_nodes(recipe, out)
    else:
        code, _, stderr = _two_processes(recipe, out, fault="step@5")
        assert code != 0, stderr[-3000:]
        outputs = [_two_processes(recipe, out)]
    for code, _, stderr in outputs:
        assert code == 0, stderr[-3000:]
    return "".join(stdout for _, stdout, _ in outputs)


@pytest.mark.parametrize("stage", [2, 3])
def test_a_stopped_run_resumes_bitwise_and_regroups(tmp_path, tiny_model_dir, single, stage):
    _, data, reference = single
    recipe = _recipe(tmp_path, tiny_model_dir, data, stage)
    straight = tmp_path / "straight"
    code, _, stderr = _two_processes(recipe, straight)
    assert code == 0, stderr[-3000:]

    stopped = tmp_path / "stopped"
    stdout = _stop_then_resume(recipe, stopped, two_nodes=stage == 3)
    assert "resuming from checkpoint step 3 of 8" in stdout
    assert losses(stopped) == losses(straight)
    assert_bitwise_equal(weights(stopped, "lora"), weights(straight, "lora"))

    if stage == 3:
        return  # regrouping (ZeRO-2 below) reads the same single-process checkpoint layout at either stage
    regrouped = tmp_path / "regrouped"
    code, _, stderr = _two_processes(recipe, regrouped, fault="step@5")
    assert code != 0 and [p.name for p in (regrouped / "sft" / "checkpoints").iterdir()] == ["step-00000003"]
    resumed = run_cli(["run", str(recipe), "--out", str(regrouped)])
    assert "written by 2 processes, continued by 1" in resumed.stdout
    _assert_close(losses(reference), losses(regrouped))


def test_full_fine_tuning_with_probes_under_zero3_matches_one_process(tmp_path, tiny_model_dir):
    """Every weight partitioned; probes generate mid-run (the whole model gathered); model/ written whole by rank 0
    from an unpartitioned copy."""
    data = chat_file(tmp_path / "chat.jsonl", count=32)
    probes = {
        "identity": False,
        "every_steps": 4,
        "max_new_tokens": 4,
        "stop_when_passed": False,
        "extra": [{"prompt": "What is item 1?", "expect": ["red"]}],
    }
    outs = {}
    for name, distributed in (("one", None), ("zero3", {"strategy": "deepspeed", "zero_stage": 3, "timeout_s": 60})):
        folder = tmp_path / name
        folder.mkdir()
        train = {"epochs": 1, "method": "full", **({"distributed": distributed} if distributed else {})}
        recipe = write_recipe(folder, tiny_model_dir, data, **train)
        settings = yaml.safe_load(recipe.read_text())
        settings["stages"][0]["probes"] = probes
        recipe.write_text(yaml.safe_dump(settings))
        outs[name] = folder / "run"
        if distributed:
            code, _, stderr = _two_processes(recipe, outs[name])
            assert code == 0, stderr[-3000:]
        else:
            run_cli(["run", str(recipe), "--out", str(outs[name])])
    _assert_close(losses(outs["one"]), losses(outs["zero3"]))
    replies = [json.loads((out / "sft" / "probes.json").read_text()) for out in outs.values()]
    assert [[r["reply"] for r in s["results"]] for s in replies[0]] == [
        [r["reply"] for r in s["results"]] for s in replies[1]
    ]
    single, sharded = weights(outs["one"], "full"), weights(outs["zero3"], "full")
    assert single.keys() == sharded.keys()
    for name, tensor in sharded.items():
        assert tensor.dtype == single[name].dtype and (tensor - single[name]).abs().max() < 1e-4, name


POISON = """
import sys
from openrecipe.train import loop
real, calls = loop._token_loss_sum, {"n": 0}
def poisoned(model, batch, autocast):
    loss = real(model, batch, autocast)
    if model.training:
        calls["n"] += 1
        if calls["n"] in (5, 6):  # one micro-batch per rank and step here: steps 5 and 6
            return loss * float("nan")
    return loss
loop._token_loss_sum = poisoned
from openrecipe.cli.main import app
sys.exit(app())
"""


def test_a_nonfinite_step_under_zero3_is_skipped_and_counted(tmp_path, tiny_model_dir, single):
    _, data, _ = single
    script = tmp_path / "poisoned.py"
    script.write_text(POISON)
    out = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}"]
    command += [str(script), "run", str(_recipe(tmp_path, tiny_model_dir, data, 3)), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [row["nonfinite_steps"] for row in rows] == [0, 0, 0, 0, 1, 2, 2, 2]
    assert [math.isfinite(row["grad_norm"]) for row in rows] == [True] * 4 + [False] * 2 + [True] * 2
    assert all(math.isfinite(row["loss"]) for row in rows[6:])  # the skipped updates left the weights finite
