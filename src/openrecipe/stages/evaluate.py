"""`eval` stage: score every variant (base+prompt first, then trained/merged/quantized) per domain."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from openrecipe.config.base import StrictModel
from openrecipe.config.references import InputPath, ModelReference
from openrecipe.errors import OpenRecipeError
from openrecipe.eval.contamination import ContaminationSettings
from openrecipe.eval.retrieval import RetrievalSettings
from openrecipe.stages.base import FILE, StageConfig, StageContext, StageResult, stage_kind
from openrecipe.stages.training_common import DataRef, read_ref


class RetrievalSpec(RetrievalSettings):
    sources: list[DataRef] = Field(
        min_length=1, description="The recipe's own data and documents to index (files, folders or stage:<id>)"
    )


class VariantSpec(StrictModel):
    name: str = Field(min_length=1)
    model: ModelReference = Field(description="The model this variant runs")
    system_prompt: str | None = Field(None, description="Defaults to the recipe's; '' means none")
    retrieval: RetrievalSpec | None = Field(None, description="Put the top-k BM25 passages into every prompt")


class EvalStage(StageConfig):
    kind: Literal["eval"] = "eval"
    variants: list[VariantSpec] = Field(min_length=1)
    tests: list[InputPath] = Field(
        default_factory=list, description="Test files (JSONL, CSV, YAML, .txt for perplexity)"
    )
    identity: bool = Field(True, description="Add the held-out identity test set when the recipe has an identity")
    baseline: str | None = Field(None, description="The prompting-only variant the others are compared with")
    batch_size: int = Field(8, ge=1)
    training_data: list[DataRef] = Field(
        default_factory=list,
        description="What the compared models were trained on, for the contamination check "
        "(default: every earlier stage's data)",
    )
    contamination: ContaminationSettings = Field(default_factory=ContaminationSettings)

    def artifact_kinds(self) -> dict[str, str]:
        return {"leaderboard": FILE, "predictions": FILE}


@stage_kind(EvalStage, "Per-domain leaderboard of every variant")
def run_eval(context: StageContext, config: EvalStage) -> StageResult:
    from openrecipe.eval.retrieval import Retriever, passages_from_records
    from openrecipe.eval.runner import Variant
    from openrecipe.eval.suite import run_suite
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
    retrievers: dict[str, Retriever] = {}
    variants = []
    for spec in config.variants:
        system = context.system_prompt if spec.system_prompt is None else (spec.system_prompt or None)
        retriever = None
        if spec.retrieval is not None:
            settings = RetrievalSettings(**spec.retrieval.model_dump(exclude={"sources"}))
            key = spec.retrieval.model_dump_json()
            if key not in retrievers:
                records = [record for ref in spec.retrieval.sources for record in read_ref(context, ref)]
                retrievers[key] = Retriever(
                    passages_from_records(records, max_chars=settings.max_passage_chars), settings
                )
            retriever = retrievers[key]
        variants.append(Variant(spec.name, context.resolve_model(spec.model), system, retriever=retriever))
    metrics = run_suite(
        variants,
        items,
        context.stage_dir,
        baseline=config.baseline,
        console=context.console,
        batch_size=config.batch_size,
        seed=context.seed,
        training_texts=_training_texts(context, config),
        contamination=config.contamination,
    )
    return StageResult(
        metrics=metrics,
        artifacts={
            "leaderboard": str(context.stage_dir / "leaderboard.json"),
            "predictions": str(context.stage_dir / "predictions.jsonl"),
        },
    )


def _training_texts(context: StageContext, config: EvalStage) -> list[str]:
    """The texts the contamination check compares test prompts with."""
    from openrecipe.data.config import DataSource
    from openrecipe.data.load import load_source

    if config.training_data:
        records = [record for ref in config.training_data for record in read_ref(context, ref)]
    else:
        records = []
        for result in context.results.values():
            # An earlier stage may legitimately have produced no rows (a generate stage whose replies were
            # all empty): nothing to compare with, not an error in the recipe.
            if "data" in result.artifacts and Path(result.artifacts["data"]).stat().st_size > 0:
                source = DataSource(path=str(result.artifacts["data"]))
                records += load_source(source, identity=context.identity, base_dir=context.recipe_dir).records
    return [record.content_text() for record in records]
