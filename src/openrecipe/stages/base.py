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
from openrecipe.config.references import (
    STAGE_ID_PATTERN,
    BaseRef,
    DefaultRef,
    HubRef,
    Loc,
    ModelSpec,
    PathRef,
    Reference,
    StageRef,
    iter_references,
    resolve_location,
)
from openrecipe.errors import OpenRecipeError
from openrecipe.models.refs import ModelRef, resolve_model_ref
from openrecipe.models.templates import ChatTemplate
from openrecipe.provenance.records import RunRecord
from openrecipe.registry import Registry

# Artifact kinds: what a later stage may do with an artifact (see config.references).
MODEL, QUANTIZED, GGUF, DATA, FILE = "model", "quantized", "gguf", "data", "file"


class StageConfig(StrictModel):
    id: str = Field(pattern=STAGE_ID_PATTERN, description="Unique stage id; its artifacts go to RUN_DIR/<id>/")
    kind: str
    description: str | None = None

    def references(self) -> list[tuple[Loc, Reference]]:
        """Every typed reference in this stage's config, with its field path."""
        return list(iter_references(self))

    def stage_refs(self) -> list[str]:
        """Ids of earlier stages this stage reads from."""
        return [ref.stage_id for _, ref in self.references() if isinstance(ref, StageRef)]

    def artifact_kinds(self) -> dict[str, str] | None:
        """The artifacts this stage will produce, name -> kind (None: not known before it runs)."""
        return None


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
    options: dict[str, Any] = field(default_factory=dict)  # run-wide flags: force, extend, confined
    recipe_name: str = ""
    console: Console = field(default_factory=Console)
    run: RunRecord | None = None  # records of the stages before this one (read-only)
    chat_template: ChatTemplate | None = None  # the recipe's `chat_template`, read once

    def resolve_model(self, reference: ModelSpec) -> ModelRef:
        """The one place a recipe's model reference becomes a `ModelRef`. A model from outside the run gets
        the recipe's chat template; an earlier stage's model already carries the one it was made with."""
        resolved = resolve_model_ref(self.model_location(reference))
        return resolved if isinstance(reference, StageRef) else resolved.with_template(self.chat_template)

    def model_location(self, reference: ModelSpec) -> str:
        """`base` → the recipe's base model; `stage:<id>[/<artifact>]` → that artifact's path."""
        if isinstance(reference, BaseRef):
            return self.base_model
        if isinstance(reference, DefaultRef):
            return "default"
        if isinstance(reference, StageRef):
            return self.artifact(reference.stage_id, reference.artifact_name("model"))
        return str(self.resolve_location(reference))

    def resolve_data(self, reference: StageRef | PathRef) -> Path:
        if isinstance(reference, StageRef):
            return Path(self.artifact(reference.stage_id, reference.artifact_name("data")))
        return self.resolve_path(reference)

    def resolve_location(self, reference: PathRef | HubRef) -> Path | str:
        location = resolve_location(reference, self.recipe_dir)
        if isinstance(location, Path):
            self._check_confined(location)
        return location

    def resolve_path(self, path: PathRef | str | Path) -> Path:
        """Relative paths in a recipe are relative to the recipe file, never to the working folder."""
        reference = path if isinstance(path, PathRef) else PathRef(str(path))
        resolved = resolve_location(reference, self.recipe_dir)
        assert isinstance(resolved, Path)
        self._check_confined(resolved)
        return resolved

    def _check_confined(self, path: Path) -> None:
        """A bundle's recipe reads only inside the bundle, also through symbolic links."""
        if not self.options.get("confined") or self.recipe_dir is None:
            return
        if not path.resolve().is_relative_to(self.recipe_dir.resolve()):
            raise OpenRecipeError(
                f"{path} resolves outside the bundle ({path.resolve()})",
                fix="a bundle may only read files inside its own folder",
            )

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
    resumable: bool = False  # runs in its own folder (checkpoints survive a kill) instead of a temporary one


STAGE_KINDS: Registry[StageKind] = Registry("stage kind")


def stage_kind(
    config: type[C], summary: str, *, resumable: bool = False
) -> Callable[[Callable[[StageContext, C], StageResult]], Any]:
    """Register a stage function under the literal `kind` of its config class."""
    kind = config.model_fields["kind"].default
    assert isinstance(kind, str), f"{config.__name__}.kind needs a Literal default"

    def decorator(function: Callable[[StageContext, C], StageResult]):
        STAGE_KINDS.add(kind, StageKind(config=config, run=function, summary=summary, resumable=resumable))
        return function

    return decorator
