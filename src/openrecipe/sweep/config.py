"""Sweep settings: the `sweep:` block of a recipe, and what `openrecipe sweep` options fill in."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from openrecipe.config.base import StrictModel


class SweepSettings(StrictModel):
    stage: str | None = Field(None, description="Stage id that short search paths (train.learning_rate) refer to")
    space: dict[str, Any] = Field(
        default_factory=dict,
        description="Setting path → values: loguniform(a,b), uniform(a,b), int(a,b), logint(a,b) or a list",
    )
    trials: int = Field(8, ge=1, description="Completed (or pruned) trials the study should reach")
    seeds: int = Field(1, ge=1, description="Runs per trial with seeds seed, seed+1, ...: their spread is seed noise")
    metric: str = Field(
        "eval_loss",
        description="A metric of the stage (report.json) or the last value of a column of its metrics.jsonl",
    )
    direction: Literal["minimize", "maximize"] = "minimize"
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median", description="Stops trials whose intermediate eval loss is worse than the others' at that step"
    )
    storage: str | None = Field(
        None,
        description="Optuna storage: a journal file path, or an RDB URL (postgresql://, mysql://, sqlite:///) "
        "that workers on several machines share; default SWEEP_DIR/study.journal",
    )
    study: str | None = Field(None, description="Study name (default: the recipe's name)")
    workers: int = Field(1, ge=1, description="Worker processes on this machine sharing the study")
    heartbeat_seconds: int = Field(10, ge=1, description="A running trial records a heartbeat this often")
    grace_seconds: int | None = Field(
        None, ge=1, description="A running trial without a heartbeat this long is failed and retried (default 3x)"
    )
    max_retries: int = Field(2, ge=0, description="Retries of a trial whose worker died")

    @field_validator("space")
    @classmethod
    def _space_readable(cls, space: dict[str, Any]) -> dict[str, Any]:
        from openrecipe.errors import OpenRecipeError
        from openrecipe.sweep.space import parse_space

        try:
            parse_space(space)
        except OpenRecipeError as error:
            raise ValueError(error.format()) from None
        return space

    @property
    def grace(self) -> int:
        return self.grace_seconds or 3 * self.heartbeat_seconds
