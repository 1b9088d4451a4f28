"""The multi-process pre-flight, on a real two-process gloo group: same job passes; a rank that sees other
data is named; a rank that never arrives fails the check instead of hanging."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank: int, store: str, facts: list[dict], results: str, absent: int | None) -> None:
    from openrecipe.errors import OpenRecipeError
    from openrecipe.train.distributed import preflight

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    outcome = "ok"
    try:
        if rank != absent:
            preflight(facts[rank], timeout=timedelta(seconds=3))
    except OpenRecipeError as error:
        outcome = error.format()
    Path(results, f"rank{rank}.txt").write_text(outcome)
    if rank == absent:
        import time

        time.sleep(6)  # stays alive but never joins the check
    dist.destroy_process_group()


def _run(tmp_path: Path, facts: list[dict], absent: int | None = None) -> list[str]:
    mp.spawn(_worker, args=(str(tmp_path / "store"), facts, str(tmp_path), absent), nprocs=2, join=True)
    return [(tmp_path / f"rank{rank}.txt").read_text() for rank in range(2)]


def test_same_job_passes(tmp_path):
    facts = {"data": "abc", "model": "m1", "recipe": "r"}
    assert _run(tmp_path, [facts, dict(facts)]) == ["ok", "ok"]


def test_a_rank_with_other_data_is_named(tmp_path):
    outcomes = _run(tmp_path, [{"data": "abc", "model": "m1"}, {"data": "xyz", "model": "m1"}])
    for outcome in outcomes:
        assert "rank 1 has data 'xyz', rank 0 has 'abc'" in outcome


def test_a_rank_that_never_arrives_fails_the_check(tmp_path):
    outcomes = _run(tmp_path, [{"data": "abc"}, {"data": "abc"}], absent=1)
    assert "rank(s) 1 did not answer within 3 s" in outcomes[0]
