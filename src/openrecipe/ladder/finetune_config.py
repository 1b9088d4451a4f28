"""`ladder: {kind: finetune}`: the recipe's sft stage run on rungs of data fraction x LoRA rank, with a
learning-rate grid at every rung and a full fine-tuning comparison at a few rates."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from openrecipe.config.base import StrictModel


class FullFinetuneSettings(StrictModel):
    """Full fine-tuning next to LoRA: the check of "LoRA's best rate is ~10x full fine-tuning's"."""

    learning_rates: list[float] = Field(min_length=2, description="Rates tried with method: full")
    fractions: list[float] = Field([1.0], min_length=1, description="Data fractions full fine-tuning runs on")

    @model_validator(mode="after")
    def _positive(self) -> FullFinetuneSettings:
        if any(rate <= 0 for rate in self.learning_rates):
            raise ValueError("full.learning_rates must all be > 0")
        return self


class FinetuneLadderSettings(StrictModel):
    kind: Literal["finetune"]
    stage: str = Field("sft", description="Id of the recipe's sft stage: its model, data and training are the job")
    fractions: list[float] = Field(min_length=3, description="Shares of the training rows, smallest first")
    ranks: list[int] = Field(min_length=1, description="LoRA ranks; alpha stays the stage's value")
    learning_rates: list[float] = Field(
        min_length=3, description="LoRA rates tried at every rung (fraction x rank), smallest first"
    )
    full: FullFinetuneSettings | None = Field(None, description="Full fine-tuning comparison points")
    epochs: float | None = Field(None, gt=0, description="Replaces the stage's train.epochs (keeps rungs small)")
    heldout_fraction: float = Field(
        0.1, gt=0.0, lt=0.5, description="Share of every data source held out, the same for every rung"
    )
    noise_seeds: int = Field(1, ge=0, description="Extra seeds of the best run at the largest fraction")
    bootstrap: int = Field(200, ge=10, description="Bootstrap resamples for the data-size law's intervals")
    threads: int | None = Field(
        None, ge=1, description="CPU threads for training (default: torch's); 1 wins on a heavily shared machine"
    )
    keep_models: bool = Field(
        False, description="Keep each run's merged model/ folder and checkpoints (large); adapters are always kept"
    )

    @model_validator(mode="after")
    def _shape(self) -> FinetuneLadderSettings:
        for name in ("fractions", "learning_rates"):
            values = getattr(self, name)
            if sorted(values) != values or len(set(values)) != len(values):
                raise ValueError(f"{name} must be distinct and in increasing order")
            if any(value <= 0 for value in values):
                raise ValueError(f"{name} must all be > 0")
        if any(fraction > 1 for fraction in self.fractions):
            raise ValueError("fractions are shares of the training rows: each must be in (0, 1]")
        if self.full is not None and any(not 0 < f <= 1 for f in self.full.fractions):
            raise ValueError("full.fractions are shares of the training rows: each must be in (0, 1]")
        if len(set(self.ranks)) != len(self.ranks) or any(rank < 1 for rank in self.ranks):
            raise ValueError("ranks must be distinct positive integers")
        return self
