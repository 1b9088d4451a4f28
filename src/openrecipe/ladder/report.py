"""ladder.md and a self-contained ladder.html: fitted curves over the points, residuals, the prediction with
its interval next to the actual result, the sweep's parallel coordinates, the transfer table, the budget."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from openrecipe.ladder.fit import LossLaw
from openrecipe.utils.fs import atomic_write_text


def _png(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _curves(result: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    law = LossLaw(**result["prediction"]["fit"]["law"])
    prediction, check = result["prediction"], result["check"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    sizes = sorted({p["non_embedding_params"] for p in result["points"]})
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(sizes) + 1))
    for color, n in zip(colors, [*sizes, prediction["non_embedding_params"]], strict=True):
        rows = [p for p in result["points"] if p["non_embedding_params"] == n]
        tokens = np.geomspace(min(result["settings"]["budgets"]), prediction["tokens"] * 1.2, 50)
        left.plot(tokens, law.predict(n, tokens), color=color, lw=1, label=f"N={n:,}")
        if rows:
            left.scatter([r["tokens_trained"] for r in rows], [r["eval_loss"] for r in rows], color=color, s=18)
    low, high = prediction["loss_interval"]
    left.errorbar(
        [prediction["tokens"]],
        [prediction["loss"]],
        yerr=[[prediction["loss"] - low], [high - prediction["loss"]]],
        fmt="s",
        color="black",
        capsize=4,
        label="predicted (95% interval)",
    )
    left.scatter(
        [prediction["tokens"]], [check["actual_loss"]], marker="*", s=120, color="red", label="actual", zorder=5
    )
    left.set(xscale="log", xlabel="training tokens", ylabel="held-out loss (nats/byte)", title="L(N, D) fit")
    left.legend(fontsize=7)
    residuals = np.expm1(np.array(prediction["fit"]["residuals"])) * 100
    right.scatter([p["flops"] for p in result["points"]], residuals, color="tab:blue")
    right.axhline(0, color="gray", lw=0.8)
    right.set(xscale="log", xlabel="training FLOPs", ylabel="residual (%)", title="residuals of the fit")
    return _png(figure)


def _parallel(result: dict[str, Any]) -> str:
    """Parallel coordinates of the learning-rate/batch sweep: one line per run, coloured by its loss."""
    import matplotlib.pyplot as plt

    runs = [r for r in result["runs"] if r["phase"] == "sweep" and np.isfinite(r["eval_loss"])]
    columns = [
        ("log10 params", [np.log10(r["non_embedding_params"]) for r in runs]),
        ("log10 lr", [np.log10(r["learning_rate"]) for r in runs]),
        ("batch", [float(r["batch_size"]) for r in runs]),
        ("loss", [r["eval_loss"] for r in runs]),
    ]
    data = np.array([values for _, values in columns])
    low, high = data.min(axis=1, keepdims=True), data.max(axis=1, keepdims=True)
    scaled = (data - low) / np.where(high > low, high - low, 1)
    figure, axes = plt.subplots(figsize=(7, 3.5))
    colors = plt.cm.plasma(scaled[-1])
    for index in range(data.shape[1]):
        axes.plot(range(len(columns)), scaled[:, index], color=colors[index], alpha=0.7)
    axes.set_xticks(
        range(len(columns)),
        [f"{name}\n[{lo[0]:.3g}, {hi[0]:.3g}]" for (name, _), lo, hi in zip(columns, low, high, strict=True)],
    )
    axes.set_yticks([])
    axes.set_title("sweep at the smallest budget (colour: loss)")
    return _png(figure)


def markdown(result: dict[str, Any]) -> str:
    prediction, check, budget = result["prediction"], result["check"], result["budget"]
    law = prediction["fit"]["law"]
    intervals = prediction["fit"]["intervals"]
    lines = [
        "# Scaling ladder",
        "",
        f"corpus: {result['corpus']['source']} ({result['corpus']['train_tokens']:,} training tokens, byte tokens)",
        f"sizes: {len(result['sizes_non_embedding_params'])}, non-embedding params "
        f"{min(result['sizes_non_embedding_params']):,}–{max(result['sizes_non_embedding_params']):,} "
        f"({result['non_embedding_span']:.0f}x); budgets {result['settings']['budgets']}",
        "",
        "## Fit L(N, D) = E + A/N^alpha + B/D^beta",
        "",
        "| coefficient | value | 95% interval |",
        "|---|---|---|",
        *[f"| {k} | {v:.4g} | [{intervals[k][0]:.4g}, {intervals[k][1]:.4g}] |" for k, v in law.items()],
        "",
        f"rms relative error of the fit: {100 * prediction['fit']['rms_relative_error']:.2f}%; leave-one-out: "
        f"{_pct(prediction['fit'].get('leave_one_out', {}).get('rms'))} rms; the largest size predicted from the "
        f"smaller ones: {_pct(prediction['fit'].get('largest_held_out', {}).get('rms'))} rms, "
        f"{_pct(prediction['fit'].get('largest_held_out', {}).get('max_abs'))} worst",
        _curvature_line(prediction["fit"].get("data_curvature")),
        f"learning rate = {prediction['learning_rate_law']['a']:.3g} x C^{prediction['learning_rate_law']['b']:.3f}; "
        f"batch = {prediction['batch_size_law']['a']:.3g} x C^{prediction['batch_size_law']['b']:.3f}",
        "",
        "## Prediction, then check",
        "",
        "| | predicted | actual | error |",
        "|---|---|---|---|",
        f"| final loss | {prediction['loss']:.4f} [{prediction['loss_interval'][0]:.4f}, "
        f"{prediction['loss_interval'][1]:.4f}] | {check['actual_loss']:.4f} | "
        f"{100 * check['loss_error_relative']:+.2f}% |",
        f"| learning rate | {prediction['learning_rate']:.3g} | grid best {check['best_grid_learning_rate']:.3g} | "
        f"loss {100 * check['predicted_lr_loss_above_best_relative']:+.2f}% vs the grid's best |",
        "",
        f"the predicted rung is {prediction['compute_multiple_of_largest_rung']:.1f}x the compute of the largest "
        "fitted rung",
        *[f"warning: {w}" for w in prediction["warnings"]],
        "",
        "## Budget",
        "",
        f"ladder compute: {100 * budget['fraction_flops']:.1f}% of the predicted rung's FLOPs "
        f"({100 * budget['fraction_seconds']:.1f}% of its seconds); "
        + whole_ladder_line(budget)
        + (
            f" (CPU time of the rungs: ladder {budget['ladder_cpu_seconds']:.0f} s, "
            f"check {budget['check_cpu_seconds']:.0f} s)"
            if budget.get("ladder_cpu_seconds") is not None and budget.get("check_cpu_seconds") is not None
            else ""
        ),
        f"counted: {budget.get('counted', 'sweep, budget and noise runs')}; not counted: "
        f"{budget.get('not_counted', 'the check')} ({budget.get('check_runs', '-')} runs, "
        f"{budget.get('check_flops', 0) / prediction['flops']:.1f}x the predicted rung's FLOPs)",
        "",
        "## Transfer: does the best setting hold as the model grows?",
        "",
        f"seed noise band of a loss difference: {_fmt(result['transfer']['noise_band'])}",
        "",
        "| rung | best lr | best batch |",
        "|---|---|---|",
        *[
            f"| w{r['width']}/d{r['depth']} | {r['best_learning_rate']:.3g} | {r['best_batch_size']} |"
            for r in result["transfer"]["rungs"]
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
            for a in result["transfer"]["adjacent"]
        ],
        "",
        "goals: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in result["goals"].items()),
    ]
    return "\n".join(lines) + "\n"


def whole_ladder_line(budget: dict[str, Any]) -> str:
    """The invocation's wall time, and when it reused finished runs, what those runs took when they ran."""
    reused = budget.get("reused_runs", 0)
    line = f"whole ladder with the check: {budget['total_seconds']:.0f} s"
    if reused:
        line += (
            f" in this invocation, which reused {reused} of {budget['runs']} runs from an earlier one (the runs' "
            f"own time: ladder {budget['ladder_seconds']:.0f} s, check {budget['check_seconds']:.0f} s)"
        )
    return line


def _curvature_line(curvature: dict[str, Any] | None) -> str:
    """Loss drop per e-fold of tokens between successive budgets, per size (the law makes each smaller)."""
    if curvature is None:
        return ""
    drops = "; ".join(
        f"N={s['params']:,.0f}: "
        + ", ".join(f"{v:.3f}" for v in s["drops_per_efold"])
        + (" (growing)" if s["accelerating"] else "")
        for s in curvature["sizes"]
    )
    return f"loss drop per e-fold of tokens, budget to budget: {drops}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else "-" if value is None else str(value)


def write_report(result: dict[str, Any], ladder_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    write_pages(ladder_dir, "scaling ladder", markdown(result), {"fit": _curves(result), "sweep": _parallel(result)})


def write_pages(ladder_dir: Path, title: str, text: str, images: dict[str, str]) -> None:
    """ladder.md, and ladder.html: the base64 PNG `images` above the same text."""
    atomic_write_text(ladder_dir / "ladder.md", text)
    figures = "".join(f'<p><img alt="{name}" src="data:image/png;base64,{data}"></p>' for name, data in images.items())
    atomic_write_text(
        ladder_dir / "ladder.html",
        f"<!doctype html><meta charset=utf-8><title>{title}</title><body style='font-family:sans-serif'>"
        f"{figures}<pre>{html.escape(text)}</pre></body>",
    )
