import json

import pytest
import torch

from openrecipe.checkpoint.manager import CheckpointManager, CorruptCheckpoint
from openrecipe.checkpoint.tensors import (
    optimizer_from_tensors,
    optimizer_to_tensors,
    rng_from_tensors,
    rng_to_tensors,
)


def save(manager, step):
    return manager.save(step, {"w": {"a": torch.full((3,), float(step))}}, {"state": {"step": step}})


def test_keeps_latest_k_and_loads_newest(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    for step in (1, 2, 3):
        save(manager, step)
    assert manager.steps() == [2, 3]
    latest = manager.latest()
    assert latest.step == 3 and latest.json["state"] == {"step": 3}
    assert latest.tensors["w"]["a"].tolist() == [3.0, 3.0, 3.0]


def test_corrupt_or_partial_newest_falls_back_with_report(tmp_path):
    manager = CheckpointManager(tmp_path, keep=3)
    save(manager, 1)
    newest = save(manager, 2)
    data = bytearray((newest / "w.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (newest / "w.safetensors").write_bytes(bytes(data))
    reports = []
    assert manager.latest(report=reports.append).step == 1
    assert "does not match its SHA-256" in reports[0]
    (newest / "COMPLETE").unlink()
    with pytest.raises(CorruptCheckpoint, match="no COMPLETE marker"):
        manager.validate(newest)


def test_interrupted_write_leaves_only_a_temporary_folder(tmp_path):
    def crash(where):
        raise KeyboardInterrupt

    manager = CheckpointManager(tmp_path, fault_hook=crash)
    with pytest.raises(KeyboardInterrupt):
        save(manager, 5)
    assert manager.steps() == []
    assert manager.latest() is None


def test_optimizer_and_rng_roundtrip_without_pickle(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    tensors, meta = optimizer_to_tensors(optimizer)
    json.dumps(meta)  # JSON-serializable: nothing pickled
    fresh = torch.optim.AdamW(model.parameters(), lr=0.1)
    optimizer_from_tensors(fresh, tensors, json.loads(json.dumps(meta)))
    for key, value in optimizer.state_dict()["state"][0].items():
        assert torch.equal(value, fresh.state_dict()["state"][0][key])
    rng_tensors, rng_meta = rng_to_tensors()
    expected = torch.rand(3)
    import random

    expected_py = random.random()
    rng_from_tensors(rng_tensors, json.loads(json.dumps(rng_meta)))
    assert torch.equal(torch.rand(3), expected)
    assert random.random() == expected_py


def test_protected_best_checkpoint_survives_pruning(tmp_path):
    manager = CheckpointManager(tmp_path, keep=2)
    for step in (1, 2, 3, 4):
        manager.save(step, {"w": {"a": torch.zeros(1)}}, {"s": {}}, protect={2})
    assert manager.steps() == [2, 3, 4]
    assert manager.latest().step == 4
