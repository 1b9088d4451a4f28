"""One evaluation, used by the eval stage and the `eval` command alike: score every variant, build the
leaderboard, test every variant against the baseline on the same items, name per-domain winners only when
the difference is significant, check the test prompts against the training data, and write it all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openrecipe.eval.compare import compare_to_baseline, domain_verdicts
from openrecipe.eval.contamination import ContaminationSettings, check_contamination, summary_lines
from openrecipe.eval.items import TestItem
from openrecipe.eval.leaderboard import build_leaderboard, rich_table, write_leaderboard
from openrecipe.eval.runner import SharedModel, Variant, evaluate_variant


def run_suite(
    variants: list[Variant],
    items: list[TestItem],
    out_dir: Path,
    *,
    baseline: str | None,
    console,
    batch_size: int = 8,
    seed: int = 0,
    use_cache: bool = True,
    training_texts: list[str] | None = None,
    contamination: ContaminationSettings | None = None,
) -> dict[str, Any]:
    """Returns the stage metrics: leaderboard, versus_baseline, verdicts and (with training texts)
    contamination."""
    from openrecipe.eval.fingerprint import model_fingerprint

    outcomes = []
    shared: SharedModel | None = None
    for variant in variants:
        fingerprint = model_fingerprint(variant.model)
        if shared is None or shared.fingerprint != fingerprint:
            shared = SharedModel(fingerprint)  # the previous model is released before the next one loads
        outcome = evaluate_variant(variant, items, batch_size=batch_size, use_cache=use_cache, shared=shared)
        if outcome["cache_hit"] and shared.perplexity is None:
            shared.perplexity = outcome["perplexity"]
        outcomes.append(outcome)
        took = "cached" if outcome["cache_hit"] else f"{outcome['seconds']:.1f} s"
        console.print(f"  {variant.name}: {took}")
    board = build_leaderboard(outcomes, seed=seed)
    metrics: dict[str, Any] = {
        "leaderboard": board,
        "baseline": baseline,
        "versus_baseline": compare_to_baseline(outcomes, baseline, seed=seed) if baseline else [],
        "verdicts": domain_verdicts(outcomes, baseline, seed=seed),
    }
    if training_texts:
        report = check_contamination(items, training_texts, contamination)
        metrics["contamination"] = report
    write_leaderboard(out_dir, board, outcomes, {k: v for k, v in metrics.items() if k != "leaderboard"})
    console.print(rich_table(board))
    for verdict in metrics["verdicts"]:
        console.print(f"  {verdict['text']}", markup=False, highlight=False)
    if "contamination" in metrics:
        report = metrics["contamination"]
        style = "yellow" if report["flagged"] else "dim"
        for line in summary_lines(report):
            console.print(f"  contamination check — {line}", style=style, markup=False, highlight=False)
        for row in report["flagged_items"][:5]:
            console.print(
                f"    {row['domain']}/{row['id']}: {row['overlap']:.0%} overlap: {row['prompt']!r}",
                style="yellow",
                markup=False,
                highlight=False,
            )
    return metrics
