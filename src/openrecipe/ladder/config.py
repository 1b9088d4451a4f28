"""The `ladder:` block of a recipe: the model family, its rungs, the token budgets, the learning-rate and
batch grid, and the held-out larger rung whose result is predicted before it is run."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from openrecipe.config.base import StrictModel
from openrecipe.ladder.family import FamilySettings, Size
from openrecipe.ladder.finetune_config import FinetuneLadderSettings


class PredictSettings(StrictModel):
    width: int = Field(ge=8)
    depth: int = Field(ge=1)
    tokens: int = Field(ge=1, description="Token budget of the predicted rung")
    check_multipliers: list[float] = Field(
        [0.5, 1.0, 2.0], min_length=1, description="Learning rates tried at the predicted rung, x the predicted one"
    )


class PretrainLadderSettings(StrictModel):
    kind: Literal["pretrain"] = "pretrain"
    corpus: Literal["python-stdlib"] = "python-stdlib"
    family: FamilySettings = Field(default_factory=FamilySettings)
    sizes: list[Size] = Field(min_length=2, description="Rungs of the family, smallest first")
    budgets: list[int] = Field(min_length=2, description="Token budgets every size is trained on")
    learning_rates: list[float] = Field(min_length=1, description="Grid searched at the smallest budget")
    grid_every_budget: int = Field(
        0,
        ge=0,
        description="The smallest this many sizes get the rate grid at every budget, so that the rate law of "
        "compute sees more data as well as bigger models",
    )
    batch_sizes: list[int] = Field([16], min_length=1, description="Sequences per step; grid with the rates")
    noise_seeds: int = Field(1, ge=0, description="Extra seeds of each size's best setting, to measure seed noise")
    bootstrap: int = Field(200, ge=10, description="Bootstrap resamples for the confidence intervals")
    budget_learning_rate: Literal["law", "best"] = Field(
        "law",
        description="Rate of each budget's runs: the fitted rate law at that run's compute, or the size's sweep best",
    )
    eval_blocks: int = Field(512, ge=8, description="Fixed held-out blocks every rung is evaluated on")
    threads: int = Field(
        1,
        ge=1,
        description="CPU threads per rung: tiny matrices gain little from more, and lose much on a busy machine",
    )
    predict: PredictSettings
    min_sizes: int = Field(5, ge=2, description="Refuse a ladder with fewer sizes than this")
    min_budgets: int = Field(3, ge=2, description="Refuse a ladder with fewer budgets than this")

    @model_validator(mode="after")
    def _shape(self) -> PretrainLadderSettings:
        if len(self.sizes) < self.min_sizes:
            raise ValueError(f"the ladder has {len(self.sizes)} sizes; at least {self.min_sizes} are needed for a fit")
        if len(self.budgets) < self.min_budgets:
            raise ValueError(f"the ladder has {len(self.budgets)} budgets; at least {self.min_budgets} are needed")
        if self.grid_every_budget > len(self.sizes):
            raise ValueError(
                f"grid_every_budget is {self.grid_every_budget} but the ladder has {len(self.sizes)} sizes; "
                "use at most that many"
            )
        if sorted(self.budgets) != self.budgets or len(set(self.budgets)) != len(self.budgets):
            raise ValueError("budgets must be distinct and in increasing order")
        for size in [*self.sizes, Size(width=self.predict.width, depth=self.predict.depth)]:
            if size.width % self.family.head_dim:
                raise ValueError(f"width {size.width} is not a multiple of family.head_dim {self.family.head_dim}")
        return self


def _ladder_kind(value: Any) -> str:
    """`kind` picks the ladder; a block without one is the pretraining ladder."""
    return (value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)) or "pretrain"


LadderSettings = Annotated[
    Annotated[PretrainLadderSettings, Tag("pretrain")] | Annotated[FinetuneLadderSettings, Tag("finetune")],
    Discriminator(_ladder_kind),
]
