"""The pretraining ladder's report: its budget line."""

from __future__ import annotations

from openrecipe.ladder.report import whole_ladder_line


def test_a_rerun_that_reused_runs_says_so_and_gives_their_own_time():
    budget = {"total_seconds": 42.0, "runs": 50, "reused_runs": 50, "ladder_seconds": 263.0, "check_seconds": 858.0}
    line = whole_ladder_line(budget)
    assert line.startswith("whole ladder with the check: 42 s in this invocation, which reused 50 of 50 runs")
    assert "ladder 263 s, check 858 s" in line
    fresh = whole_ladder_line({**budget, "total_seconds": 1200.0, "reused_runs": 0})
    assert fresh == "whole ladder with the check: 1200 s"


def test_a_ladder_written_before_runs_were_counted_reads_as_fresh():
    assert whole_ladder_line({"total_seconds": 10.0}) == "whole ladder with the check: 10 s"
