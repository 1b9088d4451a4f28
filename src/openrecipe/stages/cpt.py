"""`cpt` stage: continued pretraining on a domain corpus with general-text replay at a chosen ratio,
reporting domain perplexity gain next to general perplexity change (forgetting)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from openrecipe.config.references import TrainableModelReference
from openrecipe.data.blocks import pack_texts_to_disk
from openrecipe.errors import OpenRecipeError
from openrecipe.models.refs import ModelRef
from openrecipe.stages.base import StageConfig, StageContext, StageResult, stage_kind
from openrecipe.stages.sft import training_artifacts
from openrecipe.stages.training_common import DataRef, labels_unique, run_training, stream_ref
from openrecipe.train.batching import TrainData, held_out
from openrecipe.train.config import TrainSettings


class CptStage(StageConfig):
    kind: Literal["cpt"] = "cpt"
    model: TrainableModelReference = Field("base", validate_default=True, description="The model to train further")
    domain: list[DataRef] = Field(min_length=1, description="Domain text corpora")
    replay: list[DataRef] = Field(default_factory=list, description="General text replayed against forgetting")
    replay_ratio: float = Field(0.3, ge=0.0, lt=1.0, description="Share of training tokens drawn from replay")
    general_eval: list[DataRef] = Field(default_factory=list, description="Held-out general text for forgetting")
    block_size: int = Field(256, ge=16)
    eval_max_blocks: int = Field(
        512, ge=1, description="At most this many domain blocks are held out (train.eval_fraction of them otherwise)"
    )
    train: TrainSettings = Field(default_factory=lambda: TrainSettings(learning_rate=1e-4, eval_fraction=0.1))

    def artifact_kinds(self) -> dict[str, str]:
        return training_artifacts(self.train.method)


def _texts(context: StageContext, refs: list[DataRef]) -> Iterator[str]:
    for ref in refs:
        for record in stream_ref(context, ref):
            yield record.text if record.text is not None else record.content_text()


@stage_kind(CptStage, "Continued pretraining with replay, measuring forgetting", resumable=True)
def run_cpt(context: StageContext, config: CptStage) -> StageResult:
    from openrecipe.models.loading import load_model, load_tokenizer
    from openrecipe.models.refs import resolve_model_ref
    from openrecipe.models.scoring import perplexity

    labels_unique(config.domain + config.replay)
    if config.replay_ratio > 0 and not config.replay:
        raise OpenRecipeError(
            "replay_ratio is above 0 but no replay corpus is given",
            fix="add `replay:` sources, or set replay_ratio: 0",
        )
    reference = context.resolve_model(config.model)
    tokenizer = load_tokenizer(reference)
    # Token ids go to disk as they are made and training reads blocks by index: memory stays bounded.
    tokens_dir = context.stage_dir / "tokens"
    started = time.perf_counter()
    domain_blocks, domain_stats = pack_texts_to_disk(
        tokenizer, _texts(context, config.domain), config.block_size, tokens_dir / "domain"
    )
    tokenized = {"domain": domain_stats.to_json()}
    train_indices, eval_indices = held_out(
        len(domain_blocks), config.train.eval_fraction, context.seed, 0, limit=config.eval_max_blocks
    )
    domain_train, domain_eval = domain_blocks.take(train_indices), domain_blocks.take(eval_indices)[:]
    if not len(domain_train):
        raise OpenRecipeError(
            f"the domain corpus is shorter than one block ({config.block_size} tokens)",
            fix="add text or lower block_size",
        )
    sources, weights = {"domain": domain_train}, {"domain": 1.0 - config.replay_ratio}
    if config.replay and config.replay_ratio > 0:
        replay_blocks, replay_stats = pack_texts_to_disk(
            tokenizer, _texts(context, config.replay), config.block_size, tokens_dir / "replay"
        )
        tokenized["replay"] = replay_stats.to_json()
        if not len(replay_blocks):
            raise OpenRecipeError("the replay corpus is shorter than one block")
        sources["replay"], weights["replay"] = replay_blocks, config.replay_ratio
    tokenized["seconds"] = round(time.perf_counter() - started, 2)
    blocks = sum(len(items) for items in sources.values()) + len(domain_eval)
    context.console.print(f"  {blocks} blocks of {config.block_size} tokens, tokenized in {tokenized['seconds']:.1f} s")
    # Weights are shares of blocks, and every block has block_size tokens: so they are shares of tokens.
    data = TrainData(sources, weights, domain_eval, max_upsample=8.0)
    domain_eval_texts = [tokenizer.decode(block["input_ids"]) for block in domain_eval]
    general_texts = list(_texts(context, config.general_eval))

    def measure(model_reference: ModelRef) -> dict:
        loaded = load_model(model_reference, dtype="float32")
        out = {}
        if domain_eval_texts:
            out["domain_perplexity"] = perplexity(loaded, domain_eval_texts, block_size=config.block_size)["perplexity"]
        if general_texts:
            out["general_perplexity"] = perplexity(loaded, general_texts, block_size=config.block_size)["perplexity"]
        return out

    try:
        before = measure(reference)
        result = run_training(
            context, reference, data, config.train, f"{context.stage_dir.name}: CPT (replay {config.replay_ratio:.0%})"
        )
        after = measure(resolve_model_ref(result.artifacts["model"]))
    finally:
        shutil.rmtree(tokens_dir, ignore_errors=True)  # a re-run tokenizes again (the same blocks)
    forgetting = {}
    for key in before:
        forgetting[key] = {
            "before": round(before[key], 4),
            "after": round(after[key], 4),
            "change_pct": round(100 * (after[key] / before[key] - 1), 2),
        }
    result.metrics.update(
        replay_ratio=config.replay_ratio,
        perplexity=forgetting,
        data={"mixture": data.describe(), "domain_eval_blocks": len(domain_eval), "tokenize": tokenized},
    )
    for key, row in forgetting.items():
        context.console.print(f"  {key}: {row['before']:.2f} → {row['after']:.2f} ({row['change_pct']:+.1f}%)")
    return result
