"""ladder.md and a self-contained ladder.html for the fine-tuning ladder: loss against data with the fitted
L(D) per rank, loss against learning rate at every rung (full fine-tuning beside LoRA), the verdicts, the
best rate per rung and the transfer tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from openrecipe.ladder.finetune_analysis import drops_text, law_at
from openrecipe.ladder.report import _fmt, _png, write_pages


def _data_plot(result: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.cm.viridis(np.linspace(0, 0.85, max(1, len(result["data_laws"]))))
    for color, entry in zip(colors, result["data_laws"], strict=True):
        if not entry["points"]:
            continue
        rows, losses = np.array(entry["points"], dtype=float).T
        left.scatter(rows, losses, color=color, s=20, label=f"rank {entry['rank']} (best rate)")
        if entry["fit"] is not None:
            grid = np.geomspace(rows.min() * 0.8, rows.max() * 1.25, 50)
            left.plot(grid, law_at(entry["fit"]["law"], grid), color=color, lw=1)
            right.scatter(rows, np.expm1(np.array(entry["fit"]["residuals"])) * 100, color=color, s=20)
    left.axhline(result["base_eval_loss"], color="gray", ls="--", lw=0.8, label="base model")
    left.set(xscale="log", xlabel="training rows", ylabel="held-out loss (nats/token)", title="L(D) = E + B/D^beta")
    left.legend(fontsize=7)
    right.axhline(0, color="gray", lw=0.8)
    right.set(xscale="log", xlabel="training rows", ylabel="residual (%)", title="residuals of the fits")
    return _png(figure)


def _rate_plot(result: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    settings = result["settings"]
    ranks = settings["ranks"]
    panels_count = len(ranks) + (1 if result["full_best"] else 0)
    figure, axes = plt.subplots(1, panels_count, figsize=(4 * panels_count, 3.6), sharey=True)
    axes = np.atleast_1d(axes)
    colors = plt.cm.plasma(np.linspace(0, 0.85, len(settings["fractions"])))
    panels = [("lora", rank, f"LoRA rank {rank}") for rank in ranks]
    if result["full_best"]:
        panels.append(("full", None, "full fine-tuning"))
    for axis, (method, rank, title) in zip(axes, panels, strict=True):
        for color, fraction in zip(colors, settings["fractions"], strict=True):
            runs = sorted(
                (
                    r
                    for r in result["runs"]
                    if r["method"] == method and r["rank"] == rank and r["fraction"] == fraction
                ),
                key=lambda r: r["learning_rate"],
            )
            if runs:
                axis.plot(
                    [r["learning_rate"] for r in runs],
                    [min(r["eval_loss"], 1e3) for r in runs],
                    "o-",
                    color=color,
                    label=f"fraction {fraction:g}",
                )
        axis.set(xscale="log", xlabel="learning rate", title=title)
        axis.xaxis.set_minor_formatter(NullFormatter())  # the minor labels of a short log axis overlap
    axes[0].set_ylabel("held-out loss")
    axes[0].legend(fontsize=7)
    return _png(figure)


def _transfer_lines(title: str, tables: dict[str, Any]) -> list[str]:
    lines = [f"### {title}", ""]
    for name, table in tables.items():
        rates = table["learning_rates"]
        lines += [
            f"{name}:",
            "",
            "| rung | best rate | " + " | ".join(f"loss @ {rate:g}" for rate in rates) + " |",
            "|---|---|" + "---|" * len(rates),
            *[
                f"| {row['rung']} | {row['best_learning_rate']:g} | "
                + " | ".join(f"{loss:.4f}" for loss in row["losses"])
                + " |"
                for row in table["rungs"]
            ],
            "",
            "| from → to | Kendall tau | tau beyond noise (ranked / tied pairs) |",
            "|---|---|---|",
            *[
                f"| {a['from']} → {a['to']} | {_fmt(a['kendall_tau'])} | "
                + (
                    f"{_fmt(a['beyond_noise']['tau'])} ({a['beyond_noise']['ranked_pairs']} / "
                    f"{a['beyond_noise']['tied_pairs']})"
                    if "beyond_noise" in a
                    else "-"
                )
                + " |"
                for a in table["adjacent"]
            ],
            "",
        ]
    return lines


def markdown(result: dict[str, Any]) -> str:
    verdicts, budget, noise = result["verdicts"], result["budget"], result["noise"]
    lines = [
        "# Fine-tuning ladder",
        "",
        f"model: {result['model']}; held-out examples: {result['data']['heldout_examples']}; base model's "
        f"held-out loss {result['base_eval_loss']:.4f}",
        "data: "
        + ", ".join(
            f"{s['label']} {s['train_rows']} training / {s['heldout_rows']} held-out rows (weight {s['weight']:g})"
            for s in result["data"]["sources"]
        ),
        "",
        "## What we found",
        "",
        f"- {verdicts['rank']['text']}",
        f"- {verdicts['data']['text']}",
    ]
    if "lora_vs_full" in verdicts:
        lines.append(f"- {verdicts['lora_vs_full']['text']}")
    if "edges" in verdicts:
        lines.append(f"- {verdicts['edges']}")
    if "data_law" in verdicts:
        lines.append(f"- {verdicts['data_law']['text']}")
    lines += [
        f"- Seed noise: std {_fmt(noise['seed_std'])} of a held-out loss ({len(noise['runs'])} extra seed(s) of "
        f"the best run at the largest fraction); a difference below {_fmt(noise['band'])} is not distinguishable.",
        "",
        "## Best learning rate per rung",
        "",
        "| fraction | method | rows | grid best | interpolated | loss | at grid edge |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {b['fraction']:g} | LoRA r{b['rank']} | {b['train_rows']} | {b['grid']:g} | {b['interpolated']:.3g} | "
            f"{b['loss']:.4f} | {'yes' if b['edge'] else 'no'} |"
            for b in result["best"]
        ],
        *[
            f"| {b['fraction']:g} | full | {b['train_rows']} | {b['grid']:g} | {b['interpolated']:.3g} | "
            f"{b['loss']:.4f} | {'yes' if b['edge'] else 'no'} |"
            for b in result["full_best"]
        ],
        "",
        "## Loss against data: L(D) = E + B/D^beta (D = training rows, each rung at its best rate)",
        "",
        "| rank | E | B | beta | rms error | loss drop per e-fold of rows, share to share | largest fraction from "
        "the smaller ones: predicted / actual |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in result["data_laws"]:
        fit = entry["fit"]
        if fit is None:
            lines.append(f"| {entry['rank']} | - | - | - | - | - | too few finite points |")
            continue
        cells = [f"{fit['law'][k]:.4g} {_interval(fit['intervals'][k])}" for k in ("E", "B", "beta")]
        check = entry.get("check")
        checked = (
            f"{check['predicted']:.4f} / {check['actual']:.4f} ({100 * check['error_relative']:+.2f}%)"
            if check
            else "-"
        )
        lines.append(
            f"| {entry['rank']} | {' | '.join(cells)} | {100 * fit['rms_relative_error']:.2f}% | "
            f"{drops_text(entry)} | {checked} |"
        )
    lines += [
        "",
        "Intervals: 2.5–97.5 percentiles over bootstrap refits on resampled points; none with three points "
        "(they fit three coefficients exactly).",
        "",
        "## Transfer: does the best rate hold as the rung grows?",
        "",
        *_transfer_lines("across data fractions, per rank", result["transfer"]["across_data"]),
        *_transfer_lines("across ranks, per data fraction", result["transfer"]["across_rank"]),
        "## Budget",
        "",
        budget_line(budget),
    ]
    return "\n".join(lines) + "\n"


def budget_line(budget: dict[str, Any]) -> str:
    reused = budget.get("reused_runs", 0)
    run_cpu = budget.get("run_cpu_seconds")
    return (
        f"{budget['runs']} runs"
        + (f" ({reused} reused from an earlier invocation)" if reused else "")
        + f": {budget['run_seconds']:.0f} s of runs ({budget['train_seconds']:.0f} s of training"
        + (f", {run_cpu:.0f} CPU seconds" if run_cpu is not None else "")
        + f"); this invocation {budget['total_seconds']:.0f} s, {budget['cpu_seconds']:.0f} CPU seconds, with the "
        "preparation and the base model's score"
    )


def _interval(interval: list[float] | None) -> str:
    return "" if interval is None else f"[{interval[0]:.3g}, {interval[1]:.3g}]"


def write_report(result: dict[str, Any], ladder_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    write_pages(
        ladder_dir, "fine-tuning ladder", markdown(result), {"data": _data_plot(result), "rates": _rate_plot(result)}
    )
