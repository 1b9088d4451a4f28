"""What a stage is: a strict config class plus a plain function that runs it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import Field
from rich.console import Console

from openrecipe.config.base import StrictModel
from openrecipe.config.common import Identity
from openrecipe.errors import OpenRecipeError
from openrecipe.registry import Registry
from openrecipe.utils.walk import iter_strings

STAGE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
STAGE_REF_PREFIX = "stage:"


class StageConfig(StrictModel):
    id: str = Field(pattern=STAGE_ID_PATTERN, description="Unique stage id; its artifacts go to RUN_DIR/<id>/")
    kind: str
    description: str | None = None

    def stage_refs(self) -> list[str]:
        """Ids of earlier stages this stage reads from (`stage:<id>` values anywhere in its config)."""
        return [
            text[len(STAGE_REF_PREFIX) :].split("/", 1)[0]  # stage:<id>/<artifact>
            for text in iter_strings(self.model_dump())
            if text.startswith(STAGE_REF_PREFIX)
        ]


@dataclass
class StageResult:
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> path (absolute while running)


@dataclass
class StageContext:
    """What a running stage may know about the run: recipe-wide settings and earlier results."""

    run_dir: Path
    stage_dir: Path
    seed: int
    base_model: str
    system_prompt: str | None
    identity: Identity | None
    results: dict[str, StageResult]
    recipe_dir: Path | None = None  # relative data paths in a recipe are relative to its file
    options: dict[str, Any] = field(default_factory=dict)  # run-wide flags: force, extend
    recipe_name: str = ""
    console: Console = field(default_factory=Console)

    def resolve_model(self, reference: str) -> str:
        """`base` → the recipe's base model; `stage:<id>` → that stage's `model` artifact."""
        if reference == "base":
            return self.base_model
        if reference.startswith(STAGE_REF_PREFIX):
            return self.artifact(reference[len(STAGE_REF_PREFIX) :], "model")
        return reference

    def resolve_path(self, path: str | Path) -> Path:
        """Relative paths in a recipe are relative to the recipe file (then to the working folder)."""
        path = Path(path).expanduser()
        if not path.is_absolute() and self.recipe_dir is not None and (self.recipe_dir / path).exists():
            return self.recipe_dir / path
        return path

    def artifact(self, stage_id: str, name: str) -> str:
        result = self.results.get(stage_id)
        if result is None:
            raise OpenRecipeError(f"stage {stage_id!r} has not run before this one")
        if name not in result.artifacts:
            raise OpenRecipeError(
                f"stage {stage_id!r} produced no {name!r} artifact",
                fix=f"it produced: {', '.join(result.artifacts) or 'nothing'}",
            )
        return result.artifacts[name]


C = TypeVar("C", bound=StageConfig)


@dataclass(frozen=True)
class StageKind(Generic[C]):
    config: type[C]
    run: Callable[[StageContext, C], StageResult]
    summary: str


STAGE_KINDS: Registry[StageKind] = Registry("stage kind")


def stage_kind(config: type[C], summary: str) -> Callable[[Callable[[StageContext, C], StageResult]], Any]:
    """Register a stage function under the literal `kind` of its config class."""
    kind = config.model_fields["kind"].default
    assert isinstance(kind, str), f"{config.__name__}.kind needs a Literal default"

    def decorator(function: Callable[[StageContext, C], StageResult]):
        STAGE_KINDS.add(kind, StageKind(config=config, run=function, summary=summary))
        return function

    return decorator
