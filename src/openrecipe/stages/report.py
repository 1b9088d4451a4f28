"""`report` stage: RUN_DIR/report.md and report.html from every earlier stage's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from openrecipe.stages.base import StageConfig, StageContext, StageResult, stage_kind
from openrecipe.utils.fs import atomic_write_text

TRAINING_KINDS = ("sft", "cpt")


class ReportStage(StageConfig):
    kind: Literal["report"] = "report"


def _folder_size_mb(path: str) -> float | None:
    target = Path(path)
    if target.is_file():
        return target.stat().st_size / 1e6
    if target.is_dir():
        return sum(p.stat().st_size for p in target.rglob("*") if p.is_file() and p.suffix != ".json") / 1e6
    return None


def _verdict(context: StageContext, evaluation: dict[str, Any]) -> str | None:
    comparison = evaluation.get("versus_baseline") or []
    if not comparison:
        return None
    train_seconds = sum(
        r.metrics.get("train_seconds", 0) for r in context.results.values() if "train_seconds" in r.metrics
    )
    best = max(comparison, key=lambda row: row["delta_points"])
    if best["delta_points"] > 0:
        return (
            f"Fine-tuning beat prompting: {best['variant']} scores {100 * best['mean_score']:.0f}% vs "
            f"{100 * best['baseline_mean_score']:.0f}% for the base model with the system prompt "
            f"(+{best['delta_points']:.0f} points) after {train_seconds:.0f} s of training."
        )
    return (
        f"Prompting alone was as good: the best fine-tuned variant ({best['variant']}) is "
        f"{-best['delta_points']:.0f} points behind the base model with the system prompt "
        f"({train_seconds:.0f} s of training spent)."
    )


@stage_kind(ReportStage, "Write report.md and report.html for the whole run")
def run_report(context: StageContext, config: ReportStage) -> StageResult:
    from openrecipe.eval.report import leaderboard_chart, render_report, size_quality_chart

    assets = context.run_dir / "report_assets"
    assets.mkdir(exist_ok=True)
    images: list[str] = []
    summary: dict[str, Any] = {
        "recipe": context.recipe_name or context.run_dir.name,
        "stages": [],
        "images": images,
        "commands": [],
    }
    evaluation: dict[str, Any] = {}
    for stage_id, result in context.results.items():
        summary["stages"].append(
            {
                "id": stage_id,
                "kind": result.metrics.get("_kind", ""),
                "seconds": result.metrics.get("_seconds", 0.0),
            }
        )
        if "loss_curve" in result.artifacts:
            images.append(result.artifacts["loss_curve"])
        if "leaderboard" in result.metrics:
            evaluation = result.metrics
        if "replay_ratio" in result.metrics and "perplexity" in result.metrics:
            ppl = result.metrics["perplexity"]
            parts = [f"{stage_id}: replay {result.metrics['replay_ratio']:.0%}"]
            for key, label in (("domain_perplexity", "domain"), ("general_perplexity", "general (forgetting)")):
                if key in ppl:
                    row = ppl[key]
                    parts.append(
                        f"{label} perplexity {row['before']:.2f} → {row['after']:.2f} ({row['change_pct']:+.1f}%)"
                    )
            summary.setdefault("continued_pretraining", []).append("; ".join(parts))
        if "rows_in" in result.metrics and "removed" in result.metrics:
            removed = ", ".join(f"{k} {v}" for k, v in result.metrics["removed"].items()) or "nothing"
            summary.setdefault("cleaning", []).append(
                f"{stage_id}: {result.metrics['rows_in']} rows in, {result.metrics['rows_out']} out "
                f"(removed: {removed})"
            )
    board = evaluation.get("leaderboard")
    if board:
        summary["leaderboard"] = board
        chart = leaderboard_chart(board, assets / "leaderboard.png")
        if chart:
            images.append(str(chart))
        summary["identity"] = [
            f"{row['variant']}: {100 * row['cells']['identity']['score']:.0f}% (n={row['cells']['identity']['n']})"
            for row in board["rows"]
            if "identity" in row["cells"]
        ]
        points = []
        for row in board["rows"]:
            scores = [c["score"] for d, c in row["cells"].items() if not d.endswith(" ppl")]
            points.append(
                {
                    "variant": row["variant"],
                    "size_mb": _folder_size_mb(row["model"]),
                    "score": sum(scores) / len(scores) if scores else float("nan"),
                }
            )
        scatter = size_quality_chart(points, assets / "size_vs_quality.png")
        if scatter:
            images.append(str(scatter))
    summary["verdict"] = _verdict(context, evaluation)
    trained = [
        r for r in context.results.values() if r.metrics.get("_kind") in TRAINING_KINDS and "model" in r.artifacts
    ]
    if trained:
        # The trained model carries the recipe's system prompt as its template default: no --system needed.
        final = trained[-1].artifacts["model"]
        summary["commands"] = [f"openrecipe chat {final}", f"openrecipe serve {final}"]
        gguf = next(
            (p for r in context.results.values() for n, p in r.artifacts.items() if n.startswith("gguf_")), None
        )
        if gguf:
            summary["commands"].append(f"openrecipe serve {gguf} --engine llamacpp")
    markdown, page = render_report(context.run_dir, summary)
    atomic_write_text(context.run_dir / "report.md", markdown)
    atomic_write_text(context.run_dir / "report.html", page)
    if summary["verdict"]:
        context.console.print(f"[bold]{summary['verdict']}[/bold]")
    for line in summary.get("identity", []):
        context.console.print(f"  identity pass rate — {line}")
    context.console.print(f"  report: {context.run_dir / 'report.html'}")
    for command in summary["commands"]:
        context.console.print(f"  try: {command}", markup=False)
    return StageResult(
        metrics={"verdict": summary["verdict"]},
        artifacts={
            "report_md": str(context.run_dir / "report.md"),
            "report_html": str(context.run_dir / "report.html"),
        },
    )
