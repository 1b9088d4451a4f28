"""`report` stage: RUN_DIR/report.md and report.html from every earlier stage's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from openrecipe.provenance.records import RunRecord, RunSummary, artifact_bytes, summarize
from openrecipe.stages.base import FILE, GGUF, StageConfig, StageContext, StageResult, stage_kind
from openrecipe.utils.fs import atomic_write_text


class ReportStage(StageConfig):
    kind: Literal["report"] = "report"

    def artifact_kinds(self) -> dict[str, str]:
        return {"report_md": FILE, "report_html": FILE}


def _verdict(run: RunSummary) -> str | None:
    if not run.versus_baseline:
        return None
    best = max(run.versus_baseline, key=lambda row: row["delta_points"])
    if best["delta_points"] > 0:
        return (
            f"Fine-tuning beat prompting: {best['variant']} scores {100 * best['mean_score']:.0f}% vs "
            f"{100 * best['baseline_mean_score']:.0f}% for the base model with the system prompt "
            f"(+{best['delta_points']:.0f} points) after {run.train_seconds:.0f} s of training."
        )
    return (
        f"Prompting alone was as good: the best fine-tuned variant ({best['variant']}) is "
        f"{-best['delta_points']:.0f} points behind the base model with the system prompt "
        f"({run.train_seconds:.0f} s of training spent)."
    )


@stage_kind(ReportStage, "Write report.md and report.html for the whole run")
def run_report(context: StageContext, config: ReportStage) -> StageResult:
    from openrecipe.report.render import leaderboard_chart, render_report, size_quality_chart

    assert context.run is not None, "the runner hands every stage the run's records"
    run_dir = context.run_dir
    earlier = RunRecord(context.run.recipe, run_dir, stages=[s for s in context.run.stages if s.id != config.id])
    run = summarize(earlier)
    assets = run_dir / "report_assets"
    assets.mkdir(exist_ok=True)
    images = [str(s.path_of("loss_curve", run_dir)) for s in earlier.stages if "loss_curve" in s.artifacts]
    summary: dict[str, Any] = {
        "recipe": context.recipe_name or run_dir.name,
        "stages": run.stages,
        "images": images,
        "commands": [],
    }
    if run.continued_pretraining:
        summary["continued_pretraining"] = run.continued_pretraining
    if run.cleaning:
        summary["cleaning"] = run.cleaning
    board = run.leaderboard
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
            model = Path(row["model"])
            points.append(
                {
                    "variant": row["variant"],
                    "size_mb": artifact_bytes(model) / 1e6 if model.exists() else None,
                    "score": sum(scores) / len(scores) if scores else float("nan"),
                }
            )
        scatter = size_quality_chart(points, assets / "size_vs_quality.png")
        if scatter:
            images.append(str(scatter))
    summary["verdict"] = _verdict(run)
    if run.final_training is not None:
        # The trained model carries the recipe's system prompt as its template default: no --system needed.
        final = run.final_training.path_of("model", run_dir)
        summary["commands"] = [f"openrecipe chat {final}", f"openrecipe serve {final}"]
        gguf = next(
            (s.path_of(n, run_dir) for s in earlier.stages for n, a in s.artifacts.items() if a.kind == GGUF), None
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
