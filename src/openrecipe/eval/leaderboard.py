"""Rows = variants, columns = domains, cells = mean score with a 95% bootstrap interval and n."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from openrecipe.eval.stats import bootstrap_interval


def build_leaderboard(outcomes: list[dict[str, Any]], *, seed: int = 0) -> dict[str, Any]:
    rows, domains = [], []
    for outcome in outcomes:
        by_domain: dict[str, list[float]] = defaultdict(list)
        for result in outcome["results"]:
            by_domain[result["domain"]].append(result["score"])
        cells: dict[str, Any] = {}
        for domain, scores in by_domain.items():
            mean, low, high = bootstrap_interval(scores, seed=seed)
            cells[domain] = {"score": mean, "low": low, "high": high, "n": len(scores)}
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
    lines.append("Scores are % correct with a 95% bootstrap interval; `ppl` columns are perplexity (lower is better).")
    return "\n".join(lines) + "\n"


def compare_to_baseline(board: dict[str, Any], baseline: str) -> list[dict[str, Any]]:
    """Per variant: mean score over scored domains vs the prompting-only baseline."""
    rows = {row["variant"]: row for row in board["rows"]}
    if baseline not in rows:
        return []
    scored = [d for d in board["domains"] if not d.endswith(" ppl")]

    def average(row: dict[str, Any]) -> float:
        values = [row["cells"][d]["score"] for d in scored if d in row["cells"]]
        return sum(values) / len(values) if values else float("nan")

    base = average(rows[baseline])
    return [
        {
            "variant": name,
            "mean_score": average(row),
            "baseline_mean_score": base,
            "delta_points": 100 * (average(row) - base),
        }
        for name, row in rows.items()
        if name != baseline
    ]


def write_leaderboard(
    out_dir: Path, board: dict[str, Any], outcomes: list[dict[str, Any]], extra: dict[str, Any] | None = None
) -> None:
    """leaderboard.json (+ extra keys), leaderboard.md and predictions.jsonl in `out_dir`."""
    from openrecipe.utils.fs import atomic_write_json, atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "leaderboard.json", {**board, **(extra or {})})
    atomic_write_text(out_dir / "leaderboard.md", to_markdown(board))
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
