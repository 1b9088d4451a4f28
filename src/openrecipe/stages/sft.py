"""`sft` stage: supervised fine-tuning on chat data (LoRA or full), with probes that stop training
as soon as the model answers as it should."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from openrecipe.config.references import TrainableModelReference
from openrecipe.data.tokenize import TokenizeConfig, tokenize_conversations
from openrecipe.errors import OpenRecipeError
from openrecipe.stages.base import FILE, MODEL, StageConfig, StageContext, StageResult, stage_kind
from openrecipe.stages.training_common import DataRef, labels_unique, read_ref, run_training
from openrecipe.train.batching import TrainData, held_out
from openrecipe.train.config import ProbeSettings, TrainSettings


class SftStage(StageConfig):
    kind: Literal["sft"] = "sft"
    model: TrainableModelReference = Field("base", validate_default=True, description="The model to fine-tune")
    data: list[DataRef] = Field(min_length=1, description="Chat data sources and their mixing weights")
    train: TrainSettings = Field(default_factory=TrainSettings)
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig)
    probes: ProbeSettings = Field(default_factory=ProbeSettings)
    system_prompt: str | None = Field(None, description="Defaults to the recipe's system_prompt")
    max_upsample: float = Field(4.0, ge=1.0, description="Cap on how often a small source repeats per epoch")

    def artifact_kinds(self) -> dict[str, str]:
        return training_artifacts(self.train.method)


def training_artifacts(method: str) -> dict[str, str]:
    """What a training stage writes (see train.outputs.save_outputs and run_training)."""
    kinds = {"model": MODEL, "metrics": FILE, "loss_curve": FILE}
    if method != "full":
        kinds["adapter"] = FILE
    return kinds


def split_eval(examples: list, fraction: float, seed: int, salt: int) -> tuple[list, list]:
    train, held = held_out(len(examples), fraction, seed, salt)
    return [examples[i] for i in train.tolist()], [examples[i] for i in held.tolist()]


@stage_kind(SftStage, "Supervised fine-tuning (LoRA or full)", resumable=True)
def run_sft(context: StageContext, config: SftStage) -> StageResult:
    from openrecipe.models.loading import load_tokenizer
    from openrecipe.models.templates import use_chat_template

    labels_unique(config.data)
    system = config.system_prompt if config.system_prompt is not None else context.system_prompt
    reference = context.resolve_model(config.model)  # with the recipe's chat_template, if it names one
    tokenizer = load_tokenizer(reference)
    use_chat_template(tokenizer, None, model_name=reference.name)  # a base model and no setting: stop now
    sources, weights, evals, stats = {}, {}, [], {}
    for salt, ref in enumerate(config.data):
        records = read_ref(context, ref)
        chats = [record for record in records if record.messages is not None]  # records carry their tools
        if len(chats) != len(records):
            raise OpenRecipeError(
                f"data source {ref.label()!r} holds plain text, not chats",
                fix="use it in a `cpt` stage, or point to chat data",
            )
        examples, tokenize_stats = tokenize_conversations(tokenizer, chats, config.tokenize, system_prompt=system)
        if not examples:
            raise OpenRecipeError(f"data source {ref.label()!r} has no trainable examples after tokenization")
        train_part, eval_part = split_eval(examples, config.train.eval_fraction, context.seed, salt)
        sources[ref.label()], weights[ref.label()] = train_part, ref.weight
        evals += eval_part
        stats[ref.label()] = tokenize_stats.to_json()
    data = TrainData(sources, weights, evals, max_upsample=config.max_upsample)
    context.console.print(
        "  mixture: "
        + ", ".join(
            f"{name} {row['examples']} ex × {row['upsample']} (w={row['weight']})"
            for name, row in data.describe().items()
        )
    )
    result = run_training(
        context,
        reference,
        data,
        config.train,
        f"{context.stage_dir.name}: SFT ({config.train.method})",
        system_prompt=system,
        identity=context.identity,
        probes=config.probes,
    )
    result.metrics["data"] = {"mixture": data.describe(), "tokenize": stats, "eval_examples": len(evals)}
    return result
