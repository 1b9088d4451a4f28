"""`clean` stage: read the recipe's data sources, clean them, report what was removed and why."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from openrecipe.config.references import Loc, Location, parse_location
from openrecipe.data.clean import CleanConfig
from openrecipe.data.reviewed import CleanSource
from openrecipe.stages.base import DATA, FILE, StageConfig, StageContext, StageResult, stage_kind


class CleanStage(StageConfig):
    kind: Literal["clean"] = "clean"
    sources: list[CleanSource] = Field(min_length=1, description="Files to read (CSV, XLSX, JSONL, JSON, text)")
    identity_set: bool = Field(False, description="Add the built-in identity set for the recipe's identity")
    clean: CleanConfig = Field(default_factory=CleanConfig)

    @model_validator(mode="after")
    def _no_weights(self) -> CleanStage:
        weighted = [source.label for source in self.sources if source.weight is not None]
        if weighted:
            raise ValueError(
                f"`weight` does nothing in a clean stage (set on {', '.join(weighted)}); "
                "give weights where the data is mixed: the sft/cpt stage's `data:` entries"
            )
        return self

    def extra_references(self) -> list[tuple[Loc, Location]]:
        """Source paths are input paths too (a hub dataset id stays a hub id)."""
        return [(("sources", index, "path"), parse_location(source.path)) for index, source in enumerate(self.sources)]

    def artifact_kinds(self) -> dict[str, str]:
        return {"data": DATA, "report": FILE}


@stage_kind(CleanStage, "Read, validate and clean data, with a report")
def run_clean(context: StageContext, config: CleanStage) -> StageResult:
    from openrecipe.data.reviewed import find_patches, prepare_reviewed_data
    from openrecipe.provenance.records import hand_edits

    sources = [
        source.model_copy(update={"path": str(context.resolve_location(reference))})
        for source, (_, reference) in zip(config.sources, config.extra_references(), strict=True)
    ]
    # Hand edits from the workbench (`<file>.review.json`) are applied to what the stage reads.
    summary = prepare_reviewed_data(
        sources,
        find_patches(config.sources, sources, context.resolve_location),
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
    for label, review in summary.get("review", {}).items():
        context.console.print(f"  {hand_edits(label, review)}")
    return StageResult(
        metrics={
            "rows_in": clean["rows_in"],
            "rows_out": clean["rows_out"],
            "removed": clean["removed"],
            "modified": clean["modified"],
            **({"review": summary["review"]} if "review" in summary else {}),
        },
        artifacts={
            "data": str(context.stage_dir / "data.jsonl"),
            "report": str(context.stage_dir / "report.json"),
        },
    )
