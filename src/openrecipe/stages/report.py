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


def _verdict(run: RunSummary, verdicts: list[dict[str, Any]]) -> str | None:
    """One line: the winner per domain where a paired test names one, else what cannot be told apart."""
    if not verdicts:
        return None
    parts = [
        f"{v['domain']} — {v['winner']}" if v["winner"] else f"{v['domain']} — not distinguishable at n = {v['n']}"
        for v in verdicts
    ]
    return (
        f"Winners per domain (paired tests on the same items, {run.train_seconds:.0f} s of training): "
        + "; ".join(parts)
        + "."
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
    evaluation = next((s.metrics for s in earlier.stages if s.kind == "eval" and "verdicts" in s.metrics), {})
    summary["verdict"] = _verdict(run, evaluation.get("verdicts") or [])
    summary["verdicts"] = [v["text"] for v in evaluation.get("verdicts") or []]
    if evaluation.get("contamination"):
        from openrecipe.eval.contamination import summary_lines

        summary["contamination"] = summary_lines(evaluation["contamination"])
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
    for line in summary["verdicts"]:
        context.console.print(f"  {line}", markup=False, highlight=False)
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
