"""FSDP2 on CPU (torchrun + gloo): two processes, and two single-process nodes meeting through a c10d rendezvous,
follow the single-process loss curve; a rank killed mid-run stops the whole job, and the re-run resumes bit for
bit; a two-process checkpoint resumes in one process; a LoRA checkpoint holds the adapter, not the base."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from tests.integration.train.helpers import assert_bitwise_equal, chat_file, losses, run_cli, weights, write_recipe

pytestmark = pytest.mark.slow

LORA = {"rank": 4, "alpha": 8, "dropout": 0.0}
FSDP = {"strategy": "fsdp", "timeout_s": 60}
HANG_GUARD = 600  # seconds: far above timeout_s, so only a hang reaches it


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _torchrun(args: list[str], recipe: Path, out: Path, fault: str = "") -> tuple[subprocess.Popen, Path]:
    """One torchrun launcher; its output goes to files, so a sibling launcher never blocks on a full pipe."""
    env = {**os.environ, "OPENRECIPE_FAULT": fault}
    command = [sys.executable, "-m", "torch.distributed.run", *args, "-m", "openrecipe", "run", str(recipe)]
    logs = out.parent / f"{out.name}-{_free_port()}"
    with open(f"{logs}.out", "w") as stdout, open(f"{logs}.err", "w") as stderr:
        process = subprocess.Popen([*command, "--out", str(out)], env=env, stdout=stdout, stderr=stderr)
    return process, logs


def _finish(launched) -> tuple[int, str, str]:
    process, logs = launched
    code = process.wait(timeout=HANG_GUARD)
    return code, Path(f"{logs}.out").read_text(), Path(f"{logs}.err").read_text()


def _two_processes(recipe: Path, out: Path, fault: str = "") -> tuple[int, str, str]:
    return _finish(_torchrun(["--nproc_per_node=2", f"--master_port={_free_port()}"], recipe, out, fault))


def _two_nodes(recipe: Path, out: Path, fault_on_second: str = "") -> list[tuple[int, str, str]]:
    """Two torchrun invocations, one process each, as two machines would start them (node ranks 0 and 1)."""
    args = ["--nnodes=2", "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={_free_port()}"]
    nodes = [
        _torchrun([*args, "--node_rank=0"], recipe, out),
        _torchrun([*args, "--node_rank=1"], recipe, out, fault_on_second),
    ]
    return [_finish(node) for node in nodes]


def _world_size(run_dir: Path) -> int:
    newest = sorted((run_dir / "sft" / "checkpoints").iterdir())[-1]
    return json.loads((newest / "trajectory.json").read_text())["world_size"]


def _assert_close(reference: list[float], other: list[float]) -> None:
    assert len(reference) == len(other) == 8
    for a, b in zip(reference, other, strict=True):
        assert abs(a - b) <= 1e-4 * abs(a)


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("fsdp")
    data = chat_file(folder / "chat.jsonl", count=32)
    recipe = write_recipe(folder, tiny_model_dir, data, epochs=1, lora=LORA, distributed=FSDP)
    single = folder / "single"
    run_cli(["run", str(recipe), "--out", str(single)])
    return recipe, single


def test_two_processes_match_one_and_the_checkpoint_holds_only_the_adapter(tmp_path, job):
    recipe, single = job
    out = tmp_path / "fsdp"
    code, _, stderr = _two_processes(recipe, out)
    assert code == 0, stderr[-3000:]
    assert _world_size(out) == 2
    _assert_close(losses(single), losses(out))
    adapter = weights(single, "lora")
    for name, tensor in weights(out, "lora").items():
        assert (tensor - adapter[name]).abs().max() < 1e-4
    newest = sorted((out / "sft" / "checkpoints").iterdir())[-1]
    trainable = load_file(str(newest / "trainable.safetensors"))
    assert trainable and all(".lora_" in name for name in trainable)
    assert sum(t.numel() for t in trainable.values()) == sum(t.numel() for t in adapter.values())
    # Whole tensors in the single-process layout: weights and optimizer state alike.
    reference = sorted((single / "sft" / "checkpoints").iterdir())[-1]
    for part in ("trainable", "optimizer"):
        ours, theirs = (load_file(str(folder / f"{part}.safetensors")) for folder in (newest, reference))
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_a_two_process_checkpoint_resumes_in_one_process(tmp_path, job):
    recipe, single = job
    out = tmp_path / "regrouped"
    code, _, stderr = _two_processes(recipe, out, fault="step@5")  # both ranks die before step 6
    assert code != 0 and (out / "sft" / "checkpoints").is_dir(), stderr[-3000:]
    assert _world_size(out) == 2
    resumed = run_cli(["run", str(recipe), "--out", str(out)])
    assert "resuming from checkpoint step 3 of 8" in resumed.stdout
    assert "written by 2 processes, continued by 1" in resumed.stdout
    _assert_close(losses(single), losses(out))


def test_two_nodes_match_one_a_killed_rank_stops_the_job_and_the_rerun_is_bitwise(tmp_path, job):
    recipe, single = job
    straight = tmp_path / "straight"
    for code, _, stderr in _two_nodes(recipe, straight):
        assert code == 0, stderr[-3000:]
    assert _world_size(straight) == 2
    _assert_close(losses(single), losses(straight))

    interrupted = tmp_path / "interrupted"
    first, second = _two_nodes(recipe, interrupted, fault_on_second="step@5")  # kill -9 of the second node's rank
    assert "Signal 9 (SIGKILL)" in second[1] + second[2], second[2][-3000:]
    assert first[0] != 0 and second[0] != 0  # the surviving node stopped too: no hang
    assert [path.name for path in (interrupted / "sft" / "checkpoints").iterdir()] == ["step-00000003"]

    outputs = _two_nodes(recipe, interrupted)
    for code, _, stderr in outputs:
        assert code == 0, stderr[-3000:]
    assert any("resuming from checkpoint step 3 of 8" in stdout for _, stdout, _ in outputs)
    assert losses(interrupted) == losses(straight)
    assert_bitwise_equal(weights(interrupted, "lora"), weights(straight, "lora"))


def test_deepspeed_without_its_package_is_a_clear_error_before_any_work(tmp_path, tiny_model_dir):
    data = chat_file(tmp_path / "chat.jsonl", count=8)
    recipe = write_recipe(tmp_path, tiny_model_dir, data, distributed={"strategy": "deepspeed"})
    hidden = "import sys; sys.modules['deepspeed'] = None; from openrecipe.cli.main import app; sys.exit(app())"
    command = [sys.executable, "-c", hidden, "run", str(recipe), "--out", str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr[-3000:]
    text = " ".join((result.stdout + result.stderr).split())
    assert "deepspeed needs the deepspeed package, which is not installed" in text
    assert "pip install --no-build-isolation deepspeed" in text and "strategy: fsdp" in text
    assert not (tmp_path / "run" / "sft" / "checkpoints").exists()


def test_full_fine_tuning_with_probes_matches_one_process(tmp_path, tiny_model_dir):
    """Every weight sharded; probes generate mid-run (the root's weights gathered); model/ gathered at the end."""
    data = chat_file(tmp_path / "chat.jsonl", count=32)
    recipe = write_recipe(tmp_path, tiny_model_dir, data, epochs=1, method="full", distributed=FSDP)
    settings = yaml.safe_load(recipe.read_text())
    settings["stages"][0]["probes"] = {
        "identity": False,
        "every_steps": 4,
        "max_new_tokens": 4,
        "stop_when_passed": False,
        "extra": [{"prompt": "What is item 1?", "expect": ["red"]}],
    }
    recipe.write_text(yaml.safe_dump(settings))
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    run_cli(["run", str(recipe), "--out", str(single)])
    code, _, stderr = _two_processes(recipe, sharded)
    assert code == 0, stderr[-3000:]
    _assert_close(losses(single), losses(sharded))
    rows = [json.loads(line) for line in (sharded / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "probes_passed" in row] == [4, 8]
    reference = weights(single, "full")
    merged = weights(sharded, "full")
    assert merged.keys() == reference.keys()
    for name, tensor in merged.items():
        assert (tensor - reference[name]).abs().max() < 1e-4


def test_ranks_with_fewer_micro_batches_keep_in_step(tmp_path, tiny_model_dir):
    """Token-capped micro-batches differ per rank (row lengths differ): the short rank repeats a zero-weight one."""
    rows = []
    for i in range(32):
        question = f"What is item {i}?" + " Tell me more about it, please." * (i % 3)
        rows.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "A box."}]})
    data = tmp_path / "varied.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    recipe = write_recipe(tmp_path, tiny_model_dir, data, epochs=1, lora=LORA, distributed=FSDP, micro_batch_tokens=110)
    log = tmp_path / "uneven.txt"
    wrapper = tmp_path / "spy.py"
    wrapper.write_text(
        "import runpy, sys\n"
        "import openrecipe.train.loop as loop\n"
        "most = loop.most_across_ranks\n"
        "def spy(count):\n"
        "    largest = most(count)\n"
        "    if largest != count:\n"
        f"        open({str(log)!r}, 'a').write(f'{{count}} of {{largest}}\\n')\n"
        "    return largest\n"
        "loop.most_across_ranks = spy\n"
        "sys.argv = ['openrecipe', *sys.argv[1:]]\n"
        "runpy.run_module('openrecipe', run_name='__main__')\n"
    )
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    run_cli(["run", str(recipe), "--out", str(single)])
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}"]
    result = subprocess.run(
        [*command, str(wrapper), "run", str(recipe), "--out", str(sharded)],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert log.exists()  # some step really had fewer micro-batches on one rank
    _assert_close(losses(single), losses(sharded))


def test_a_rank_that_hangs_is_stopped_by_the_timeout(tmp_path, tiny_model_dir):
    """SIGSTOP keeps a rank's connections open, so only `timeout_s` ends the peer's wait in a collective."""
    import psutil

    data = chat_file(tmp_path / "chat.jsonl", count=200)
    recipe = write_recipe(tmp_path, tiny_model_dir, data, epochs=1, lora=LORA, distributed={**FSDP, "timeout_s": 10})
    out = tmp_path / "run"
    process, logs = _torchrun(["--nproc_per_node=2", f"--master_port={_free_port()}"], recipe, out)
    metrics = out / "sft" / "metrics.jsonl"
    while process.poll() is None and (not metrics.exists() or len(metrics.read_text().splitlines()) < 2):
        time.sleep(0.2)
    workers = psutil.Process(process.pid).children()
    assert len(workers) == 2
    workers[-1].send_signal(signal.SIGSTOP)
    code, _, stderr = _finish((process, logs))
    assert code != 0
    assert "Timed out waiting 10000ms" in stderr, stderr[-3000:]
