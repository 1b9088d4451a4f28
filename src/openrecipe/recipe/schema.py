"""The recipe schema, composed from every registered stage kind's config class."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Field, create_model, model_validator

import openrecipe.stages  # noqa: F401  (registers the built-in stage kinds)
from openrecipe.config.base import StrictModel
from openrecipe.config.common import Identity
from openrecipe.config.loading import apply_overrides, load_yaml_with_lines, validate_config
from openrecipe.errors import OpenRecipeError
from openrecipe.stages.base import STAGE_KINDS, StageConfig


class RecipeBase(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Short name of the recipe")
    description: str | None = None
    seed: int = Field(0, ge=0, description="Seeds data shuffling, initialization and sampling")
    base_model: str = Field("default", description="'default', a local folder, a .gguf file or a hub id")
    system_prompt: str | None = Field(None, description="Used consistently for training, eval and serving")
    identity: Identity | None = None
    stages: list[StageConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_stage_graph(self) -> RecipeBase:
        seen: set[str] = set()
        problems: list[str] = []
        for stage in self.stages:
            if stage.id in seen:
                problems.append(f"stage id {stage.id!r} is used twice; ids must be unique")
            for reference in stage.stage_refs():
                if reference not in seen:
                    where = "a later stage" if reference in {s.id for s in self.stages} else "no stage"
                    problems.append(
                        f"stage {stage.id!r} reads 'stage:{reference}', but that is {where}; "
                        "a stage can only read stages listed before it"
                    )
            seen.add(stage.id)
        if problems:
            raise ValueError("; ".join(problems))
        return self


@cache
def _recipe_model(kinds: tuple[str, ...]) -> type[RecipeBase]:
    configs = tuple(STAGE_KINDS.get(kind).config for kind in kinds)
    stage_union = Annotated[Union[configs], Field(discriminator="kind")]  # noqa: UP007
    return create_model(
        "Recipe",
        __base__=RecipeBase,
        stages=(list[stage_union], Field(default_factory=list, description="Stages, run in order")),
    )


def recipe_model() -> type[RecipeBase]:
    """The Recipe class for the stage kinds registered right now."""
    return _recipe_model(tuple(STAGE_KINDS.names()))


def recipe_json_schema() -> dict[str, Any]:
    return recipe_model().model_json_schema()


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> RecipeBase:
    """Read, override and validate a recipe file; every problem is reported at once."""
    path = Path(path)
    data, lines = load_yaml_with_lines(path)
    if not isinstance(data, dict):
        raise OpenRecipeError("a recipe must be a YAML mapping (name:, base_model:, stages: ...)", where=str(path))
    if overrides:
        data = apply_overrides(data, overrides)
    return validate_config(recipe_model(), data, lines=lines, source=str(path))
