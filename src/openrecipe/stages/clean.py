"""`clean` stage: read the recipe's data sources, clean them, report what was removed and why."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from openrecipe.data.clean import CleanConfig
from openrecipe.data.config import DataSource
from openrecipe.stages.base import StageConfig, StageContext, StageResult, stage_kind


class CleanStage(StageConfig):
    kind: Literal["clean"] = "clean"
    sources: list[DataSource] = Field(min_length=1, description="Files to read (CSV, XLSX, JSONL, JSON, text)")
    identity_set: bool = Field(False, description="Add the built-in identity set for the recipe's identity")
    clean: CleanConfig = Field(default_factory=CleanConfig)


@stage_kind(CleanStage, "Read, validate and clean data, with a report")
def run_clean(context: StageContext, config: CleanStage) -> StageResult:
    from openrecipe.data.prepare import prepare_data

    summary = prepare_data(
        config.sources,
        context.stage_dir,
        clean=config.clean,
        identity=context.identity,
        include_identity_set=config.identity_set,
        base_dir=context.recipe_dir,
    )
    clean = summary["clean"]
    for label, row in summary["sources"].items():
        context.console.print(
            f"  {label}: read {row['rows_read']}, rejected {row['rejected']}, kept {row['rows_kept']}"
        )
    removed = ", ".join(f"{rule} {count}" for rule, count in clean["removed"].items()) or "nothing"
    context.console.print(f"  rows {clean['rows_in']} → {clean['rows_out']}; removed: {removed}")
    return StageResult(
        metrics={
            "rows_in": clean["rows_in"],
            "rows_out": clean["rows_out"],
            "removed": clean["removed"],
            "modified": clean["modified"],
        },
        artifacts={
            "data": str(context.stage_dir / "data.jsonl"),
            "report": str(context.stage_dir / "report.json"),
        },
    )
