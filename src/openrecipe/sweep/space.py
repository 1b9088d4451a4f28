"""Search dimensions: `path=loguniform(1e-5,3e-3)`, `path=uniform(0,1)`, `path=int(4,64)`,
`path=logint(4,256)` or `path=[4,16,64]`, parsed once into typed values that suggest through Optuna."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from openrecipe.errors import OpenRecipeError

RANGE_KINDS = ("loguniform", "uniform", "int", "logint")
_RANGE = re.compile(r"^(?P<kind>[a-z]+)\((?P<low>[^,]+),(?P<high>[^,)]+)\)$")
# Top-level recipe keys: a dimension starting with one of these is a full recipe path, not a stage path.
RECIPE_KEYS = ("stages", "seed", "base_model", "system_prompt", "identity", "name", "description")


@dataclass(frozen=True)
class Dimension:
    """One searched setting: a recipe path and the values it may take."""

    path: str
    kind: str  # loguniform | uniform | int | logint | choice
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.path, list(self.choices))
        if self.kind in ("int", "logint"):
            return trial.suggest_int(self.path, int(self.low), int(self.high), log=self.kind == "logint")
        return trial.suggest_float(self.path, float(self.low), float(self.high), log=self.kind == "loguniform")

    def grid_values(self) -> list[Any]:
        if self.kind == "choice":
            return list(self.choices)
        if self.kind in ("int", "logint") and self.high - self.low <= 16:
            return list(range(int(self.low), int(self.high) + 1))
        raise OpenRecipeError(
            f"the grid sampler needs a list of values for {self.path!r}, not a {self.kind} range",
            fix=f"write e.g. --space '{self.path}=[...]', or use --sampler tpe/random",
        )

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.path}=[{', '.join(str(c) for c in self.choices)}]"
        return f"{self.path}={self.kind}({self.low:g},{self.high:g})"


def _number(text: str, spec: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise OpenRecipeError(
            f"{text.strip()!r} in {spec!r} is not a number", fix="write e.g. loguniform(1e-5,3e-3)"
        ) from None


def full_path(path: str, stage: str | None) -> str:
    """`train.learning_rate` with stage `sft` is `stages.sft.train.learning_rate`; full paths stay as they are."""
    if path.split(".")[0] in RECIPE_KEYS or stage is None:
        return path
    return f"stages.{stage}.{path}"


def parse_dimension(spec: str, stage: str | None = None) -> Dimension:
    """Parse one `--space` string; errors say which part is wrong and show the accepted forms."""
    forms = "loguniform(a,b), uniform(a,b), int(a,b), logint(a,b) or [v1,v2,...]"
    if "=" not in spec:
        raise OpenRecipeError(f"search dimension {spec!r} is not PATH=VALUES", fix=f"VALUES is one of {forms}")
    path, values = (part.strip() for part in spec.split("=", 1))
    if not path or not all(path.split(".")):
        raise OpenRecipeError(f"search dimension {spec!r} has an empty setting path")
    path = full_path(path, stage)
    compact = values.replace(" ", "")
    if compact.startswith("["):
        try:
            choices = yaml.safe_load(values)
        except yaml.YAMLError as error:
            raise OpenRecipeError(f"cannot read the list in {spec!r}: {error}", fix="write e.g. [4,16,64]") from None
        if not isinstance(choices, list) or not choices:
            raise OpenRecipeError(f"{spec!r}: the list of values is empty", fix="write e.g. [4,16,64]")
        if len(set(map(repr, choices))) != len(choices):
            raise OpenRecipeError(f"{spec!r} lists a value twice")
        return Dimension(path, "choice", choices=tuple(choices))
    match = _RANGE.match(compact)
    if match is None or match["kind"] not in RANGE_KINDS:
        raise OpenRecipeError(f"cannot read the values of {spec!r}", fix=f"write one of {forms}")
    kind = match["kind"]
    low, high = _number(match["low"], spec), _number(match["high"], spec)
    if not low < high:
        raise OpenRecipeError(f"{spec!r}: the low end must be below the high end")
    if kind.startswith("log") and low <= 0:
        raise OpenRecipeError(f"{spec!r}: a log range needs a positive low end")
    if kind in ("int", "logint") and (low != int(low) or high != int(high)):
        raise OpenRecipeError(f"{spec!r}: an int range needs whole numbers")
    return Dimension(path, kind, low=low, high=high)


def parse_space(specs: list[str] | dict[str, Any], stage: str | None = None) -> list[Dimension]:
    """A list of `PATH=VALUES` strings (CLI) or a `{PATH: VALUES}` mapping (a recipe's `sweep:` block)."""
    if isinstance(specs, dict):
        items = [f"{path}={_yaml_scalar(v) if isinstance(v, list) else v}" for path, v in specs.items()]
    else:
        items = list(specs)
    dimensions = [parse_dimension(spec, stage) for spec in items]
    paths = [d.path for d in dimensions]
    for path in paths:
        if paths.count(path) > 1:
            raise OpenRecipeError(f"the setting {path!r} is searched twice", fix="keep one --space for it")
    return dimensions


def overrides_for(params: dict[str, Any]) -> list[str]:
    """Dotted `key=value` overrides for one trial (values written as YAML so types survive)."""
    return [f"{path}={_yaml_scalar(value)}" for path, value in params.items()]


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()
