"""Merge with mergekit (linear, slerp, ties, dare_ties, task_arithmetic). Adapters are merged into their
base with PEFT first; a pre-flight check refuses models that cannot be merged, before mergekit runs."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from openrecipe.config.base import StrictModel
from openrecipe.config.references import DefaultRef, HubRef, ModelSpec, PathRef, TrainableModelReference
from openrecipe.errors import OpenRecipeError
from openrecipe.models.materialize import materialize
from openrecipe.models.refs import ModelRef, resolve_model_ref
from openrecipe.registry import Registry
from openrecipe.utils.fs import atomic_directory


@dataclass(frozen=True)
class MergeMethodSpec:
    """What a mergekit method needs from a merge config; the validator reads only this."""

    summary: str
    needs_base: bool
    exact_models: int | None = None  # models besides the base
    min_inputs: int = 1  # models plus base
    uses_density: bool = False


MERGE_METHODS: Registry[MergeMethodSpec] = Registry("merge method")
MERGE_METHODS.add("linear", MergeMethodSpec("weighted average of the models (and the base)", False, min_inputs=2))
MERGE_METHODS.add("slerp", MergeMethodSpec("spherical interpolation between the base and one model", True, 1))
MERGE_METHODS.add("ties", MergeMethodSpec("TIES: trimmed, sign-agreeing task vectors", True, uses_density=True))
MERGE_METHODS.add("dare_ties", MergeMethodSpec("DARE drop-and-rescale, then TIES", True, uses_density=True))
MERGE_METHODS.add("task_arithmetic", MergeMethodSpec("sum of weighted task vectors on the base", True))

MergeMethod = Literal[tuple(MERGE_METHODS.names())]  # type: ignore[valid-type]


class MergeInput(StrictModel):
    model: TrainableModelReference
    weight: float = 1.0
    density: float | None = Field(None, gt=0, le=1, description="ties/dare_ties: share of each delta kept")


class MergeSettings(StrictModel):
    method: MergeMethod = "linear"
    base: TrainableModelReference | None = Field(
        None, description="Base model (required for slerp, ties, dare_ties, task_arithmetic)"
    )
    models: list[MergeInput] = Field(min_length=1)
    t: float = Field(0.5, ge=0, le=1, description="slerp interpolation factor")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    @model_validator(mode="after")
    def _shape(self) -> MergeSettings:
        spec = MERGE_METHODS.get(self.method)
        if spec.needs_base and not self.base:
            raise ValueError(f"method {self.method} needs `base`")
        if spec.exact_models is not None and len(self.models) != spec.exact_models:
            raise ValueError(f"{self.method} merges the base with exactly {_count(spec.exact_models)} other model(s)")
        if len(self.models) + (1 if self.base else 0) < spec.min_inputs:
            raise ValueError(f"{self.method} needs at least {_count(spec.min_inputs)} models (`base` counts)")
        named = [str(self.base)] * (self.base is not None) + [str(item.model) for item in self.models]
        twice = sorted({name for name in named if named.count(name) > 1})
        if twice:
            raise ValueError(f"{', '.join(repr(n) for n in twice)} is named more than once; merge different models")
        return self


def _count(number: int) -> str:
    return {1: "one", 2: "two", 3: "three"}.get(number, str(number))


def resolve_outside_recipe(reference: ModelSpec) -> ModelRef:
    """Outside a recipe (the CLI), paths are relative to the working folder and there is no `base`."""
    if isinstance(reference, DefaultRef | HubRef | PathRef):
        return resolve_model_ref(str(reference))
    raise OpenRecipeError(f"{reference} only means something inside a recipe", fix="pass a path or a hub id")


def preflight(folders: list[Path]) -> None:
    """Same architecture, same tensor shapes, same vocabulary — or a clear refusal."""
    from safetensors import safe_open
    from transformers import AutoTokenizer

    def describe(folder: Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
        config = json.loads((folder / "config.json").read_text())
        shapes: dict[str, tuple[int, ...]] = {}
        for file in sorted(folder.glob("*.safetensors")):
            with safe_open(str(file), "pt") as handle:
                for key in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                    shapes[key] = tuple(handle.get_slice(key).get_shape())
        return config, shapes

    reference, reference_shapes = describe(folders[0])
    reference_vocab = AutoTokenizer.from_pretrained(str(folders[0])).get_vocab()
    for folder in folders[1:]:
        config, shapes = describe(folder)
        if config.get("architectures") != reference.get("architectures"):
            raise OpenRecipeError(
                f"cannot merge {folder} into {folders[0]}: architectures differ "
                f"({config.get('architectures')} vs {reference.get('architectures')})",
                fix="merge only models fine-tuned from the same base",
            )
        if shapes != reference_shapes:
            differing = sorted(
                k for k in set(shapes) | set(reference_shapes) if shapes.get(k) != reference_shapes.get(k)
            )
            raise OpenRecipeError(
                f"cannot merge {folder} into {folders[0]}: tensor shapes differ "
                f"(first: {differing[0]} {shapes.get(differing[0])} vs {reference_shapes.get(differing[0])})",
                fix="merge only models of the same size and architecture",
            )
        if AutoTokenizer.from_pretrained(str(folder)).get_vocab() != reference_vocab:
            raise OpenRecipeError(
                f"cannot merge {folder} into {folders[0]}: the tokenizers' vocabularies differ",
                fix="merge only models that share a tokenizer",
            )


def _check_distinct(settings: MergeSettings, folders: list[Path]) -> None:
    """Two references that resolve to one folder (e.g. `base` and the base model's path) merge a model with
    itself, which mergekit refuses with an internal message."""
    names = ([str(settings.base)] if settings.base else []) + [str(item.model) for item in settings.models]
    seen: dict[Path, str] = {}
    for name, folder in zip(names, folders, strict=True):
        first = seen.setdefault(folder.resolve(), name)
        if first != name:
            raise OpenRecipeError(
                f"merge inputs {first!r} and {name!r} are the same model ({folder})",
                fix="merge different models (e.g. a fine-tune with its base)",
            )


def _mergekit_config(settings: MergeSettings, base: Path | None, inputs: list[tuple[MergeInput, Path]]) -> dict:
    if settings.method == "slerp":
        other = inputs[0][1]
        return {
            "merge_method": "slerp",
            "base_model": str(base),
            "dtype": settings.dtype,
            "slices": [
                {
                    "sources": [
                        {"model": str(base), "layer_range": [0, _layers(base)]},
                        {"model": str(other), "layer_range": [0, _layers(base)]},
                    ]
                }
            ],
            "parameters": {"t": settings.t},
        }
    models = []
    for spec, path in inputs:
        parameters: dict[str, Any] = {"weight": spec.weight}
        if MERGE_METHODS.get(settings.method).uses_density:
            parameters["density"] = spec.density if spec.density is not None else 0.5
        models.append({"model": str(path), "parameters": parameters})
    config: dict[str, Any] = {"merge_method": settings.method, "dtype": settings.dtype, "models": models}
    if base is not None:
        config["base_model"] = str(base)
        if settings.method == "linear":
            config["models"].append({"model": str(base), "parameters": {"weight": 1.0}})
            config.pop("base_model")
    return config


def _layers(folder: Path) -> int:
    return int(json.loads((folder / "config.json").read_text())["num_hidden_layers"])


def run_merge(
    settings: MergeSettings, out: Path, resolve: Callable[[ModelSpec], ModelRef] = resolve_outside_recipe
) -> dict[str, Any]:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions
    from mergekit.merge import run_merge as mergekit_run

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        base = materialize(resolve(settings.base), workdir) if settings.base else None
        inputs = [(spec, materialize(resolve(spec.model), workdir)) for spec in settings.models]
        folders = ([base] if base else []) + [path for _, path in inputs]
        _check_distinct(settings, folders)
        preflight(folders)
        config = _mergekit_config(settings, base, inputs)
        with atomic_directory(out, overwrite=True) as target:
            mergekit_run(
                MergeConfiguration.model_validate(yaml.safe_load(yaml.safe_dump(config))),
                str(target),
                MergeOptions(copy_tokenizer=True, lazy_unpickle=False, allow_crimes=False, quiet=True),
            )
            for file in target.iterdir():
                os.chmod(file, 0o644)  # mergekit writes 0600
            (target / "mergekit_config.yml").write_text(yaml.safe_dump(config))
            # The fine-tuned model's tokenizer files carry the chat template it was trained with.
            tokenizer_source = inputs[0][1]
            for name in ("chat_template.jinja", "tokenizer_config.json", "tokenizer.json", "openrecipe.json"):
                if (tokenizer_source / name).is_file():
                    (target / name).write_bytes((tokenizer_source / name).read_bytes())
    return {
        "method": settings.method,
        "inputs": [str(s.model) for s in settings.models],
        "base": str(settings.base) if settings.base else None,
    }
