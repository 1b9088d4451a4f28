"""Checks of a recipe against the files it names, cheap enough for `validate`: what would otherwise stop a
run only when its stage starts, after the stages before it ran."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openrecipe.config.references import BaseRef, HubRef, ModelSpec, PathRef, StageRef, resolve_location
from openrecipe.errors import OpenRecipeError
from openrecipe.models.templates import BUILTIN_TEMPLATES, SETTING, folder_has_chat_template, resolve_chat_template
from openrecipe.stages.cpt import CptStage
from openrecipe.stages.sft import SftStage


def template_problems(recipe: Any, recipe_dir: Path | None) -> list[OpenRecipeError]:
    """The recipe's Jinja template file unreadable or broken, or a base model without a template and no setting."""
    if isinstance(recipe.chat_template, PathRef):
        try:
            resolve_chat_template(resolve_location(recipe.chat_template, recipe_dir))
        except OpenRecipeError as error:
            return [error]
        return []
    return missing_template_problems(recipe, recipe_dir)


def missing_template_problems(recipe: Any, recipe_dir: Path | None) -> list[OpenRecipeError]:
    """`sft` stages that would fine-tune a local model folder without a chat template, when the recipe names
    none (hub ids are not looked up here: their stage says so when it starts)."""
    if recipe.chat_template is not None:
        return []
    earlier: dict[str, Any] = {}
    problems = []
    for stage in recipe.stages:
        earlier.setdefault(stage.id, stage)
        if not isinstance(stage, SftStage):
            continue
        folder = _trained_folder(stage.model, recipe, earlier, recipe_dir)
        if folder is None or not (folder / "tokenizer_config.json").is_file() or folder_has_chat_template(folder):
            continue
        problems.append(
            OpenRecipeError(
                f"stage {stage.id!r} fine-tunes {folder}, which has no chat template (a base model?), and the "
                "recipe names none",
                where=SETTING,
                fix=f"add `{SETTING}: <name>` to the recipe, next to base_model: a built-in name "
                f"({', '.join(BUILTIN_TEMPLATES.names())}) or a .jinja file; `mistral` needs only BOS/EOS tokens",
            )
        )
    return problems


def _trained_folder(reference: ModelSpec, recipe: Any, earlier: dict[str, Any], recipe_dir: Path | None):
    """The local folder whose tokenizer a training stage starts from, following `cpt` stages back; None
    when it is not a local model folder (default, a hub id, a GGUF, an adapter, another stage's output)."""
    if isinstance(reference, BaseRef):
        reference = recipe.base_model
    if isinstance(reference, StageRef):
        source = earlier.get(reference.stage_id)
        if isinstance(source, CptStage) and reference.artifact in (None, "model"):
            return _trained_folder(source.model, recipe, earlier, recipe_dir)
        return None
    if not isinstance(reference, PathRef | HubRef):
        return None
    location = resolve_location(reference, recipe_dir)
    if not isinstance(location, Path) or not location.is_dir() or (location / "adapter_config.json").is_file():
        return None
    return location
