"""`eval` stage: score every variant (base+prompt first, then trained/merged/quantized) per domain."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from openrecipe.config.base import StrictModel
from openrecipe.config.references import InputPath, ModelReference
from openrecipe.errors import OpenRecipeError
from openrecipe.stages.base import FILE, StageConfig, StageContext, StageResult, stage_kind


class VariantSpec(StrictModel):
    name: str = Field(min_length=1)
    model: ModelReference = Field(description="The model this variant runs")
    system_prompt: str | None = Field(None, description="Defaults to the recipe's; '' means none")


class EvalStage(StageConfig):
    kind: Literal["eval"] = "eval"
    variants: list[VariantSpec] = Field(min_length=1)
    tests: list[InputPath] = Field(
        default_factory=list, description="Test files (JSONL, CSV, YAML, .txt for perplexity)"
    )
    identity: bool = Field(True, description="Add the held-out identity test set when the recipe has an identity")
    baseline: str | None = Field(None, description="The prompting-only variant the others are compared with")
    batch_size: int = Field(8, ge=1)

    def artifact_kinds(self) -> dict[str, str]:
        return {"leaderboard": FILE, "predictions": FILE}


@stage_kind(EvalStage, "Per-domain leaderboard of every variant")
def run_eval(context: StageContext, config: EvalStage) -> StageResult:
    from openrecipe.eval.leaderboard import build_leaderboard, compare_to_baseline, rich_table, write_leaderboard
    from openrecipe.eval.runner import Variant, evaluate_variant
    from openrecipe.eval.testsets import identity_test_set, load_test_set

    names = [v.name for v in config.variants]
    if len(set(names)) != len(names):
        raise OpenRecipeError("variant names must be unique")
    if config.baseline is not None and config.baseline not in names:
        raise OpenRecipeError(f"baseline {config.baseline!r} is not one of the variants: {', '.join(names)}")
    items = []
    for test in config.tests:
        items += load_test_set(context.resolve_path(test))
    if config.identity and context.identity is not None:
        items += identity_test_set(context.identity.name, context.identity.organization)
    if not items:
        raise OpenRecipeError("no test items: give `tests:` or an identity")
    outcomes = []
    for spec in config.variants:
        system = context.system_prompt if spec.system_prompt is None else (spec.system_prompt or None)
        variant = Variant(spec.name, context.model_location(spec.model), system)
        outcome = evaluate_variant(variant, items, batch_size=config.batch_size)
        outcomes.append(outcome)
        took = "cached" if outcome["cache_hit"] else f"{outcome['seconds']:.1f} s"
        context.console.print(f"  {spec.name}: {took}")
    board = build_leaderboard(outcomes, seed=context.seed)
    comparison = compare_to_baseline(board, config.baseline) if config.baseline else []
    write_leaderboard(context.stage_dir, board, outcomes, {"baseline": config.baseline, "versus_baseline": comparison})
    context.console.print(rich_table(board))
    return StageResult(
        metrics={"leaderboard": board, "versus_baseline": comparison},
        artifacts={
            "leaderboard": str(context.stage_dir / "leaderboard.json"),
            "predictions": str(context.stage_dir / "predictions.jsonl"),
        },
    )
