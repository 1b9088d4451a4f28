"""Every reference a recipe makes, parsed once at validation into a typed value.

`base`, `default`, `stage:<id>`, `stage:<id>/<artifact>`, hub ids and paths are strings in YAML and typed
values everywhere after validation; they dump back to the exact string the user wrote. One rule resolves
a relative path: relative to the recipe file's folder (the working folder only for a recipe that has no
file), never both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, PlainSerializer, PlainValidator, WithJsonSchema

STAGE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
SAFE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"  # a file or folder name: no separators, no `..`
STAGE_REF_PREFIX = "stage:"
_STAGE_ID = re.compile(STAGE_ID_PATTERN)
_ARTIFACT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# Artifact kinds a model field can read; training, quantize and export cannot start from a torchao-quantized
# folder.
MODEL_KINDS = frozenset({"model", "quantized", "gguf"})
TRAINABLE_KINDS = frozenset({"model", "gguf"})
DATA_KINDS = frozenset({"data"})

Role = Literal["model", "data", "input"]


@dataclass(frozen=True)
class BaseRef:
    """The recipe's `base_model`."""

    def __str__(self) -> str:
        return "base"


@dataclass(frozen=True)
class DefaultRef:
    """The embedded default model."""

    def __str__(self) -> str:
        return "default"


@dataclass(frozen=True)
class StageRef:
    """An artifact of an earlier stage; without a name, the artifact the field's role implies."""

    stage_id: str
    artifact: str | None = None
    accepts: frozenset[str] = field(default=MODEL_KINDS, compare=False)

    def artifact_name(self, role: Role) -> str:
        return self.artifact or ("data" if role == "data" else "model")

    def __str__(self) -> str:
        return f"{STAGE_REF_PREFIX}{self.stage_id}" + (f"/{self.artifact}" if self.artifact else "")


@dataclass(frozen=True)
class HubRef:
    """`owner/name`: a hub id, unless a folder of that name sits beside the recipe (the folder wins)."""

    repo_id: str

    def __str__(self) -> str:
        return self.repo_id


@dataclass(frozen=True)
class PathRef:
    """A local file or folder as written in the recipe (relative paths are relative to the recipe)."""

    path: str

    @property
    def is_confined(self) -> bool:
        """Relative, without `..` or `~`: stays inside the folder it is resolved against."""
        pure = PurePath(self.path)
        return not (pure.is_absolute() or self.path.startswith("~") or ".." in pure.parts)

    def __str__(self) -> str:
        return self.path


@dataclass(frozen=True)
class TemplateName:
    """A built-in chat template, by name (`chatml`, `llama3`, ...); a Jinja file is a `PathRef`."""

    name: str

    def __str__(self) -> str:
        return self.name


JINJA_SUFFIXES = (".jinja", ".jinja2", ".j2")
Location = PathRef | HubRef
ModelSpec = BaseRef | DefaultRef | StageRef | HubRef | PathRef
DataSpec = StageRef | PathRef
Reference = ModelSpec


def parse_stage_ref(text: str, accepts: frozenset[str]) -> StageRef:
    body = text[len(STAGE_REF_PREFIX) :]
    stage_id, _, artifact = body.partition("/")
    if not _STAGE_ID.match(stage_id) or ("/" in body and not _ARTIFACT.match(artifact)):
        raise ValueError(f"{text!r} is not a stage reference; write stage:<id> or stage:<id>/<artifact>")
    return StageRef(stage_id, artifact or None, accepts)


def parse_location(text: str) -> Location:
    """A hub id (`owner/name`) or a path; `..`, `~` and absolute paths are always paths."""
    if _HUB_ID.match(text) and not text.lower().endswith(".gguf") and ".." not in text.split("/"):
        return HubRef(text)
    return PathRef(text)


def parse_model_reference(text: str, *, allow_base: bool = True, accepts: frozenset[str] = MODEL_KINDS) -> ModelSpec:
    text = text.strip()
    if not text:
        raise ValueError("empty model reference; write 'base', 'default', stage:<id>, a path or a hub id")
    if text == "base":
        if not allow_base:
            raise ValueError("'base' means the recipe's base_model and cannot be used here")
        return BaseRef()
    if text == "default":
        return DefaultRef()
    if text.startswith(STAGE_REF_PREFIX):
        if not allow_base:
            raise ValueError("a stage reference cannot be used here; write 'default', a path or a hub id")
        return parse_stage_ref(text, accepts)
    return parse_location(text)


def parse_data_reference(text: str) -> DataSpec:
    text = text.strip()
    if not text:
        raise ValueError("empty data reference; write a file path or stage:<id>")
    if text.startswith(STAGE_REF_PREFIX):
        return parse_stage_ref(text, DATA_KINDS)
    return PathRef(text)


def parse_input_path(text: str) -> PathRef:
    text = text.strip()
    if not text:
        raise ValueError("empty path")
    if text.startswith(STAGE_REF_PREFIX):
        raise ValueError(f"{text!r}: this field takes a file path, not a stage reference")
    return PathRef(text)


def parse_template_reference(text: str) -> TemplateName | PathRef:
    """A `.jinja` file (or anything with a folder in it) is a path relative to the recipe; else a name."""
    text = text.strip()
    if not text:
        raise ValueError("empty chat template; write a built-in name (e.g. chatml) or a .jinja file")
    if text.lower().endswith(JINJA_SUFFIXES) or "/" in text or "\\" in text:
        return parse_input_path(text)
    return TemplateName(text)


def _typed(spec: Any, parse, description: str, kinds: tuple[type, ...]) -> Any:
    """`spec` parsed from a string by `parse`, dumped back to that string, a plain string in the schema."""

    def validate(value: Any) -> Any:
        if isinstance(value, kinds):
            return value
        if isinstance(value, PurePath):
            value = str(value)
        if not isinstance(value, str):
            raise ValueError(f"expected a string ({description})")
        return parse(value)

    return Annotated[
        (
            spec,
            PlainValidator(validate),
            PlainSerializer(str, return_type=str),
            WithJsonSchema({"type": "string", "description": description}),
        )
    ]


_MODEL_VALUES = (BaseRef, DefaultRef, StageRef, HubRef, PathRef)
ModelReference = _typed(
    ModelSpec,
    parse_model_reference,
    "'base', 'default', 'stage:<id>', 'stage:<id>/<artifact>', a path or a hub id",
    _MODEL_VALUES,
)
TrainableModelReference = _typed(
    ModelSpec,
    lambda text: parse_model_reference(text, accepts=TRAINABLE_KINDS),
    "'base', 'default', 'stage:<id>', 'stage:<id>/<artifact>' (a model or GGUF), a path or a hub id",
    _MODEL_VALUES,
)
# quantize and export read full weights too: a torchao folder cannot be quantized again or converted to GGUF.
FullWeightsModelReference = _typed(
    ModelSpec,
    lambda text: parse_model_reference(text, accepts=TRAINABLE_KINDS),
    "'base', 'default', 'stage:<id>', 'stage:<id>/<artifact>' (a model or GGUF, not a quantized folder), "
    "a path or a hub id",
    _MODEL_VALUES,
)
BaseModelReference = _typed(
    ModelSpec,
    lambda text: parse_model_reference(text, allow_base=False),
    "'default', a local folder or .gguf file (relative to the recipe) or a hub id",
    (DefaultRef, HubRef, PathRef),
)
DataReference = _typed(
    DataSpec,
    parse_data_reference,
    "a data file (relative to the recipe) or stage:<id>[/<artifact>]",
    (StageRef, PathRef),
)
InputPath = _typed(PathRef, parse_input_path, "a file or folder, relative to the recipe", (PathRef,))
ChatTemplateReference = _typed(
    TemplateName | PathRef,
    parse_template_reference,
    "a built-in chat template name or a .jinja file (relative to the recipe)",
    (TemplateName, PathRef),
)

Loc = tuple[str | int, ...]


def iter_references(value: Any, loc: Loc = ()) -> Iterator[tuple[Loc, Reference]]:
    """Every typed reference inside a config, with its field path (stages, 2, data, 0, path)."""
    if isinstance(value, BaseRef | DefaultRef | StageRef | HubRef | PathRef):
        yield loc, value
    elif isinstance(value, BaseModel):
        extra = getattr(value, "extra_references", None)
        for name in type(value).model_fields:
            yield from iter_references(getattr(value, name), (*loc, name))
        if extra is not None:
            for sub, reference in extra():
                yield (*loc, *sub), reference
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from iter_references(item, (*loc, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from iter_references(item, (*loc, key))


def resolve_location(reference: Location, recipe_dir: Path | None) -> Path | str:
    """The one rule: relative paths are relative to the recipe's folder; a hub id stays a string unless a
    folder of that name sits beside the recipe."""
    root = recipe_dir if recipe_dir is not None else Path.cwd()
    if isinstance(reference, HubRef):
        local = root / reference.repo_id
        return local if local.exists() else reference.repo_id
    path = Path(reference.path).expanduser()
    return path if path.is_absolute() else root / path


def format_loc(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)
