"""Rows = variants, columns = domains, cells = mean score with a 95% interval (Wilson for pass/fail items,
bootstrap for graded scores) and n."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from openrecipe.eval.stats import score_interval


def build_leaderboard(outcomes: list[dict[str, Any]], *, seed: int = 0) -> dict[str, Any]:
    rows, domains = [], []
    for outcome in outcomes:
        by_domain: dict[str, list[float]] = defaultdict(list)
        for result in outcome["results"]:
            by_domain[result["domain"]].append(result["score"])
        cells: dict[str, Any] = {}
        for domain, scores in by_domain.items():
            cells[domain] = score_interval(scores, seed=seed)
        for domain, value in outcome.get("perplexity", {}).items():
            cells[f"{domain} ppl"] = {"perplexity": value["perplexity"], "tokens": value["tokens"]}
        for domain in cells:
            if domain not in domains:
                domains.append(domain)
        rows.append(
            {
                "variant": outcome["variant"],
                "model": outcome["model"],
                "cells": cells,
                "seconds": outcome.get("seconds"),
                "cache_hit": outcome.get("cache_hit", False),
            }
        )
    return {"domains": domains, "rows": rows}


def format_cell(cell: dict[str, Any] | None) -> str:
    if not cell:
        return "–"
    if "perplexity" in cell:
        return f"{cell['perplexity']:.2f}"
    if math.isnan(cell["score"]):
        return "–"
    return f"{100 * cell['score']:.0f} [{100 * cell['low']:.0f}–{100 * cell['high']:.0f}] n={cell['n']}"


def to_markdown(board: dict[str, Any]) -> str:
    header = "| variant | " + " | ".join(board["domains"]) + " |"
    lines = [header, "|" + "---|" * (len(board["domains"]) + 1)]
    for row in board["rows"]:
        lines.append(
            f"| {row['variant']} | " + " | ".join(format_cell(row["cells"].get(d)) for d in board["domains"]) + " |"
        )
    lines.append("")
    lines.append(
        "Scores are % correct with a 95% interval (Wilson for pass/fail items, bootstrap for graded scores); "
        "`ppl` columns are perplexity (lower is better)."
    )
    return "\n".join(lines) + "\n"


def comparison_markdown(versus_baseline: list[dict[str, Any]], verdicts: list[dict[str, Any]]) -> str:
    """The verdict per domain, then every variant against the baseline with its paired test."""
    lines = ["## Verdict per domain", ""] + [f"- {v['text']}" for v in verdicts]
    if versus_baseline:
        baseline_rows = "| variant | domain | score | baseline | Δ points | test | p (Holm) | significant |"
        lines += ["", "## Against the baseline (same items)", "", baseline_rows, "|---|---|---|---|---|---|---|---|"]
        for row in versus_baseline:
            lines.append(
                f"| {row['variant']} | {row['domain']} | {100 * row['score']:.0f}% "
                f"| {100 * row['baseline_score']:.0f}% "
                f"| {row['delta_points']:+.0f} | {row['test']} | {row['p_adjusted']:.3g} | "
                f"{'yes' if row['significant'] else 'no'} |"
            )
    return "\n".join(lines) + "\n"


def write_leaderboard(
    out_dir: Path, board: dict[str, Any], outcomes: list[dict[str, Any]], extra: dict[str, Any] | None = None
) -> None:
    """leaderboard.json (+ extra keys), leaderboard.md and predictions.jsonl in `out_dir`."""
    from openrecipe.utils.fs import atomic_write_json, atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "leaderboard.json", {**board, **(extra or {})})
    extra = extra or {}
    comparison = comparison_markdown(extra.get("versus_baseline", []), extra.get("verdicts", []))
    if extra.get("contamination"):
        from openrecipe.eval.contamination import summary_lines

        lines = summary_lines(extra["contamination"])
        lines += [
            f"{r['domain']}/{r['id']} ({r['overlap']:.0%}): {r['prompt']}"
            for r in extra["contamination"]["flagged_items"]
        ]
        comparison += "\n## Contamination check\n\n" + "".join(f"- {line}\n" for line in lines)
    atomic_write_text(out_dir / "leaderboard.md", to_markdown(board) + ("\n" + comparison if extra else ""))
    atomic_write_text(
        out_dir / "predictions.jsonl",
        "".join(
            json.dumps({"variant": o["variant"], **r}, ensure_ascii=False) + "\n"
            for o in outcomes
            for r in o["results"]
        ),
    )


def rich_table(board: dict[str, Any]):
    from rich.table import Table

    table = Table(title="leaderboard")
    table.add_column("variant")
    for domain in board["domains"]:
        table.add_column(domain)
    for row in board["rows"]:
        table.add_row(row["variant"], *[format_cell(row["cells"].get(d)) for d in board["domains"]])
    return table
