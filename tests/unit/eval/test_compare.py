import pytest

from openrecipe.eval.compare import compare_to_baseline, domain_verdicts
from openrecipe.eval.leaderboard import build_leaderboard, comparison_markdown, format_cell
from openrecipe.eval.stats import exact_mcnemar, holm_adjust, paired_test, score_interval, wilson_interval


def _outcome(variant: str, scores: dict[str, list[float]]) -> dict:
    results = [
        {"id": f"{domain}-{index}", "domain": domain, "score": score}
        for domain, values in scores.items()
        for index, score in enumerate(values)
    ]
    return {"variant": variant, "model": variant, "results": results, "perplexity": {}}


def test_wilson_interval_is_not_degenerate_at_the_edges():
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and 0.65 < low < 0.75
    low, high = wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and 0.25 < high < 0.31
    low, high = wilson_interval(30, 60)
    assert low < 0.5 < high and high - low < 0.26


def test_pass_fail_cells_use_wilson_and_graded_cells_bootstrap():
    cell = score_interval([1.0] * 10)
    assert cell["interval"] == "wilson" and cell["passed"] == 10 and cell["low"] < 0.8
    assert format_cell(cell) == "100 [72–100] n=10"
    assert score_interval([0.5, 0.25, 1.0])["interval"] == "bootstrap"


def test_exact_mcnemar_matches_the_binomial_tail():
    assert exact_mcnemar(0, 6) == pytest.approx(2 * 0.5**6)
    assert exact_mcnemar(3, 3) == pytest.approx(1.0)
    assert exact_mcnemar(0, 0) == 1.0
    assert exact_mcnemar(1, 9) == pytest.approx(2 * (1 + 10) / 2**10)


def test_paired_test_uses_only_discordant_items():
    a = [1.0] * 40 + [0.0] * 20
    b = [1.0] * 40 + [0.0] * 20
    assert paired_test(a, b).p_value == 1.0
    better = [1.0] * 55 + [0.0] * 5
    test = paired_test(better, b)
    assert test.test == "exact McNemar" and test.only_a == 15 and test.only_b == 0 and test.p_value < 0.001
    graded = paired_test([0.9] * 30, [0.2] * 30)
    assert graded.test == "paired bootstrap" and graded.p_value < 0.01


def test_holm_adjustment_is_monotone_and_capped():
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_verdict_names_a_winner_only_when_significant():
    outcomes = [
        _outcome("base+prompt", {"support": [1.0] * 10 + [0.0] * 50, "general": [1.0] * 7 + [0.0] * 3}),
        _outcome("base+retrieval", {"support": [1.0] * 50 + [0.0] * 10, "general": [1.0] * 6 + [0.0] * 4}),
        _outcome("sft", {"support": [1.0] * 20 + [0.0] * 40, "general": [1.0] * 8 + [0.0] * 2}),
    ]
    verdicts = {v["domain"]: v for v in domain_verdicts(outcomes, "base+prompt")}
    assert verdicts["support"]["winner"] == "base+retrieval"
    assert "base+retrieval wins" in verdicts["support"]["text"] and "n = 60" in verdicts["support"]["text"]
    assert verdicts["general"]["winner"] is None
    assert "not distinguishable at n = 10" in verdicts["general"]["text"]
    rows = compare_to_baseline(outcomes, "base+prompt")
    support = {r["variant"]: r for r in rows if r["domain"] == "support"}
    assert support["base+retrieval"]["significant"] and support["base+retrieval"]["delta_points"] == pytest.approx(
        200 / 3
    )
    assert all(not r["significant"] for r in rows if r["domain"] == "general")
    text = comparison_markdown(rows, list(verdicts.values()))
    assert "exact McNemar" in text and "| base+retrieval | support |" in text


def test_verdict_when_two_variants_beat_the_baseline_but_tie():
    outcomes = [
        _outcome("base", {"d": [0.0] * 60}),
        _outcome("a", {"d": [1.0] * 40 + [0.0] * 20}),
        _outcome("b", {"d": [1.0] * 38 + [0.0] * 22}),
    ]
    [verdict] = domain_verdicts(outcomes, "base")
    assert verdict["winner"] is None and verdict["tied_with_top"] == ["b"]
    assert "all beat base" in verdict["text"] and "not distinguishable from each other at n = 60" in verdict["text"]


def test_leaderboard_cells_keep_counts():
    board = build_leaderboard([_outcome("x", {"d": [1.0, 0.0, 1.0]})])
    cell = board["rows"][0]["cells"]["d"]
    assert cell["passed"] == 2 and cell["n"] == 3 and cell["interval"] == "wilson"
