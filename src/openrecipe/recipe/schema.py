"""The recipe schema, composed from every registered stage kind's config class."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Field, create_model, field_validator, model_validator

import openrecipe.stages  # noqa: F401  (registers the built-in stage kinds)
from openrecipe.config.base import StrictModel
from openrecipe.config.common import Identity
from openrecipe.config.loading import apply_overrides, load_yaml_with_lines, validate_config
from openrecipe.config.references import (
    DATA_KINDS,
    BaseModelReference,
    ChatTemplateReference,
    PathRef,
    StageRef,
    TemplateName,
    format_loc,
    iter_references,
)
from openrecipe.errors import MultipleErrors, OpenRecipeError
from openrecipe.ladder.config import LadderSettings
from openrecipe.models.templates import BUILTIN_TEMPLATES
from openrecipe.recipe.checks import template_problems
from openrecipe.stages.base import STAGE_KINDS, StageConfig
from openrecipe.sweep.config import SweepSettings


class RecipeBase(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Short name of the recipe")
    description: str | None = None
    license: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9.+-]*$",
        description="License of the published model, as a Hub license id (apache-2.0, mit, llama3.1, other, ...); "
        "`publish` refuses a run without one",
    )
    seed: int = Field(0, ge=0, description="Seeds data shuffling, initialization and sampling")
    base_model: BaseModelReference = Field(
        "default",
        validate_default=True,
        description="'default', a local folder or .gguf file (relative to the recipe) or a hub id",
    )
    chat_template: ChatTemplateReference | None = Field(
        None,
        description="How chats are rendered for training, eval, serving and export: a built-in name "
        f"({', '.join(BUILTIN_TEMPLATES.names())}) or a .jinja file relative to the recipe; needed for a "
        "base model without its own template, and replaces the model's own when given",
    )
    system_prompt: str | None = Field(None, description="Used consistently for training, eval and serving")
    identity: Identity | None = None
    sweep: SweepSettings | None = Field(None, description="Defaults for `openrecipe sweep` (ignored by `run`)")
    ladder: LadderSettings | None = Field(None, description="Rungs for `openrecipe ladder` (ignored by `run`)")
    stages: list[StageConfig] = Field(default_factory=list)

    @field_validator("chat_template")
    @classmethod
    def _known_template(cls, value: TemplateName | PathRef | None) -> TemplateName | PathRef | None:
        if isinstance(value, TemplateName) and value.name not in BUILTIN_TEMPLATES:
            raise ValueError(BUILTIN_TEMPLATES.unknown_message(value.name) + "; or give a .jinja file")
        return value

    @model_validator(mode="after")
    def _check_stage_graph(self) -> RecipeBase:
        seen: dict[str, StageConfig] = {}
        problems: list[str] = []
        for stage in self.stages:
            if stage.id in seen:
                problems.append(f"stage id {stage.id!r} is used twice; ids must be unique")
            for loc, reference in stage.references():
                if isinstance(reference, StageRef):
                    where = f"stages[{stage.id}].{format_loc(loc)}"
                    problem = _stage_ref_problem(reference, seen, {s.id for s in self.stages})
                    if problem:
                        problems.append(f"{where}: {problem}")
            seen.setdefault(stage.id, stage)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _stage_ref_problem(reference: StageRef, earlier: dict[str, StageConfig], all_ids: set[str]) -> str | None:
    """What the run could not resolve, said at validation: a later or unknown stage, a missing artifact,
    or an artifact of the wrong kind (a model field reading data, a training stage reading a quantized model)."""
    source = earlier.get(reference.stage_id)
    if source is None:
        where = "a later stage" if reference.stage_id in all_ids else "no stage"
        return f"reads '{reference}', but that is {where}; a stage can only read stages listed before it"
    kinds = source.artifact_kinds()
    if kinds is None:
        return None
    role = "data" if reference.accepts == DATA_KINDS else "model"
    name = reference.artifact_name(role)
    if name not in kinds:
        return (
            f"reads '{reference}', but stage {source.id!r} ({source.kind}) produces no {name!r} "
            f"(it produces: {', '.join(kinds) or 'nothing'})"
        )
    if kinds[name] not in reference.accepts:
        fitting = [n for n, k in kinds.items() if k in reference.accepts]
        hint = f"; use one of: {', '.join(f'stage:{source.id}/{n}' for n in fitting)}" if fitting else ""
        needed = " or ".join(sorted(reference.accepts))
        return f"reads '{reference}', a {kinds[name]} artifact, where it needs {needed}{hint}"
    return None


def confinement_problems(recipe: RecipeBase) -> list[str]:
    """Paths a bundle's recipe may not name: absolute ones, `~` and `..` (they leave the bundle)."""
    return [
        f"{format_loc(loc)}: {reference} leaves the bundle's folder"
        for loc, reference in iter_references(recipe)
        if isinstance(reference, PathRef) and not reference.is_confined
    ]


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


def load_recipe(path: str | Path, overrides: list[str] | None = None, *, confined: bool = False) -> RecipeBase:
    """Read, override and validate a recipe file; every problem is reported at once. `confined` (a
    bundle's recipe) also refuses every path that could leave the recipe's folder."""
    path = Path(path)
    data, lines = load_yaml_with_lines(path)
    if not isinstance(data, dict):
        raise OpenRecipeError("a recipe must be a YAML mapping (name:, base_model:, stages: ...)", where=str(path))
    if overrides:
        data = apply_overrides(data, overrides)
    recipe = validate_config(recipe_model(), data, lines=lines, source=str(path))
    if confined:
        problems = confinement_problems(recipe)
        if problems:
            errors = [
                OpenRecipeError(text, where=str(path), fix="a bundle names only files inside it, by relative path")
                for text in problems
            ]
            raise MultipleErrors(errors, header=f"{path}: {len(errors)} unsafe path(s) in a bundle's recipe")
    template_errors = template_problems(recipe, path.resolve().parent)
    if template_errors:
        raise MultipleErrors(template_errors, header=f"{path}: chat_template")
    return recipe
