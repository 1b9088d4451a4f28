"""Load YAML keeping line numbers, apply `a.b.c=value` overrides, and turn pydantic errors
into messages that name the file, line, field path and a did-you-mean suggestion."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from openrecipe.errors import MultipleErrors, OpenRecipeError
from openrecipe.registry import did_you_mean

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


def _record_lines(node: yaml.Node, path: Loc, lines: dict[Loc, int], loader: yaml.SafeLoader) -> None:
    """Walk the composed YAML tree beside the constructed data, noting each key path's line."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:  # `<<: *defaults`: the merged keys are recorded where they are written
                continue
            key = loader.construct_object(key_node, deep=True)
            if key in seen:
                raise OpenRecipeError(
                    f"duplicate key {key!r}",
                    where=f"line {key_node.start_mark.line + 1}",
                    fix="keep only one",
                )
            seen.add(key)
            _record_lines(value_node, (*path, key), lines, loader)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*path, index), lines, loader)


MAX_YAML_BYTES = 8 << 20
MAX_YAML_NODES = 200_000
_MERGE_TAG = "tag:yaml.org,2002:merge"
_SAFE_TAGS = frozenset({_MERGE_TAG, *(tag for tag in yaml.SafeLoader.yaml_constructors if tag is not None)})


def _check_node_graph(root: yaml.Node) -> None:
    """Refuse what would blow up or run code before anything is built: aliases that expand past
    MAX_YAML_NODES (a few hundred bytes of nested aliases reach billions), recursive aliases, and tags
    other than YAML's plain types (`!!python/...`)."""
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            in_progress.discard(key)
            if sizes[key] > MAX_YAML_NODES:
                raise OpenRecipeError(
                    f"YAML aliases expand to more than {MAX_YAML_NODES:,} values",
                    where=f"line {node.start_mark.line + 1}",
                    fix="write the values out, or use fewer nested aliases (*name)",
                )
            continue
        if key in sizes:
            continue
        if key in in_progress:
            raise OpenRecipeError(
                "YAML alias refers to itself",
                where=f"line {node.start_mark.line + 1}",
                fix="remove the recursive alias",
            )
        if node.tag not in _SAFE_TAGS:
            raise OpenRecipeError(
                f"YAML tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed",
                where=f"line {node.start_mark.line + 1}",
                fix="recipes hold plain values: strings, numbers, booleans, lists and mappings",
            )
        in_progress.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def compose_bounded(text: str, where: str) -> yaml.Node | None:
    """yaml.compose plus the checks above; errors name `where` and the line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f":{mark.line + 1}" if mark else ""
        problem = error.problem or error.context or "invalid YAML"
        raise OpenRecipeError(f"YAML syntax error: {problem}", where=f"{where}{line}") from None
    except (yaml.YAMLError, RecursionError) as error:
        raise OpenRecipeError(f"YAML syntax error: {type(error).__name__}", where=where) from None
    if node is not None:
        try:
            _check_node_graph(node)
        except OpenRecipeError as error:
            raise OpenRecipeError(
                error.what, where=f"{where}:{(error.where or '').removeprefix('line ')}", fix=error.fix
            ) from None
    return node


def load_yaml_with_lines(path: str | Path) -> tuple[Any, dict[Loc, int]]:
    """Parse a YAML file safely; return the data and a map from key path to line number."""
    path = Path(path)
    if not path.exists():
        raise OpenRecipeError(f"file not found: {path}", fix="check the path")
    if path.is_dir():
        raise OpenRecipeError(f"{path} is a folder, expected a YAML file")
    if path.stat().st_size > MAX_YAML_BYTES:
        raise OpenRecipeError(
            f"file is larger than {MAX_YAML_BYTES >> 20} MiB", where=str(path), fix="a recipe is a small YAML file"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise OpenRecipeError("file is not UTF-8 text", where=str(path), fix="save it as UTF-8") from error
    node = compose_bounded(text, str(path))
    lines: dict[Loc, int] = {}
    if node is None:
        return {}, lines
    loader = yaml.SafeLoader("")
    try:
        _record_lines(node, (), lines, loader)
        return loader.construct_document(node), lines
    except OpenRecipeError as error:
        where = f"{path}:{error.where.removeprefix('line ')}" if error.where else str(path)
        raise OpenRecipeError(error.what, where=where, fix=error.fix) from None
    except yaml.MarkedYAMLError as error:  # e.g. an invalid timestamp or a non-hashable key
        mark = error.problem_mark or error.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise OpenRecipeError(f"YAML error: {error.problem or error.context}", where=f"{path}{line}") from None


def _parse_override_value(text: str) -> Any:
    try:
        node = compose_bounded(text, "override")
        value = yaml.SafeLoader("").construct_document(node) if node is not None else None
    except OpenRecipeError as error:
        if "syntax error" in error.what:
            return text
        raise
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        # YAML 1.1 reads `1e-4` as a string; users mean a number.
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(data: dict[str, Any], overrides: list[str], model: type[BaseModel] | None = None) -> dict:
    """Apply `dotted.key=value` strings (values parsed as YAML). List items are addressed by index
    or, for lists of mappings with an `id`, by that id (`stages.train.lr=1e-4`)."""
    for override in overrides:
        if "=" not in override:
            raise OpenRecipeError(f"override {override!r} is not key=value", fix="write e.g. seed=7")
        key, raw = override.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise OpenRecipeError(f"override key {key!r} is empty or has an empty part")
        target: Any = data
        walked: list[str] = []
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if isinstance(target, list):
                position = _list_position(target, part, walked)
                if last:
                    target[position] = _parse_override_value(raw)
                else:
                    target = target[position]
            elif isinstance(target, dict):
                if last:
                    target[part] = _parse_override_value(raw)
                else:
                    if part not in target or target[part] is None:
                        target[part] = {}
                    target = target[part]
            else:
                raise OpenRecipeError(
                    f"override {key!r}: {'.'.join(walked)!r} is a value, not a section",
                )
            walked.append(part)
    return data


def _list_position(items: list[Any], part: str, walked: list[str]) -> int:
    if part.lstrip("-").isdigit():
        position = int(part)
        if -len(items) <= position < len(items):
            return position
        raise OpenRecipeError(f"override: {'.'.join(walked)} has {len(items)} items, no index {position}")
    ids = [item.get("id") for item in items if isinstance(item, dict)]
    if part in ids:
        return ids.index(part)
    suggestion = did_you_mean(part, [str(i) for i in ids if i is not None])
    hint = f"; did you mean {suggestion!r}?" if suggestion else ""
    raise OpenRecipeError(
        f"override: no item with id {part!r} in {'.'.join(walked)}{hint}",
        fix=f"ids are: {', '.join(str(i) for i in ids)}",
    )


def _unwrap(annotation: Any) -> list[Any]:
    """All concrete types reachable from an annotation (through Optional, Union, list, dict, Annotated)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_unwrap(arg))
        return out
    return [annotation]


def _walk_models(model: type[BaseModel], loc: Loc) -> tuple[Loc, list[type[BaseModel]]]:
    """Follow a pydantic error loc through the schema: the loc without discriminated-union tag steps
    (pydantic inserts the member's tag, e.g. the stage kind, which may also be a field name: a `clean`
    stage has a `clean` field), and the model classes that own the mapping at its end."""
    current: list[Any] = [model]
    kept: list[str | int] = []
    for part in loc:
        members = [c for c in current if isinstance(c, type) and issubclass(c, BaseModel)]
        tagged = [c for c in members if _literal_tag(c) == part]
        if tagged and len(members) > 1:
            current = tagged
            continue
        following: list[Any] = []
        tag_only = True
        for candidate in current:
            origin = typing.get_origin(candidate)
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                field = candidate.model_fields.get(str(part)) if isinstance(part, str) else None
                if field is not None:
                    following.extend(_unwrap(field.annotation))
                    tag_only = False
                elif _literal_tag(candidate) == part:  # the tag of a one-member union
                    following.append(candidate)
            elif origin in (list, tuple, set) and isinstance(part, int):
                following.extend(_unwrap(typing.get_args(candidate)[0]))
                tag_only = False
            elif origin is dict:
                following.extend(_unwrap(typing.get_args(candidate)[1]))
                tag_only = False
        if not (following and tag_only):
            kept.append(part)
        current = following
    return tuple(kept), [c for c in current if isinstance(c, type) and issubclass(c, BaseModel)]


def _models_at(model: type[BaseModel], loc: Loc) -> list[type[BaseModel]]:
    """The model classes that own the mapping at `loc` (several if a union is ambiguous)."""
    return _walk_models(model, loc)[1]


def _literal_tag(model: type[BaseModel]) -> Any:
    for name in ("kind", "method", "format", "metric"):
        field = model.model_fields.get(name)
        if field is not None and typing.get_origin(field.annotation) is typing.Literal:
            return typing.get_args(field.annotation)[0]
    return None


def _line_for(loc: Loc, lines: dict[Loc, int], data: Any) -> int | None:
    # Pydantic inserts union tags into locs (('stages', 0, 'sft', 'lr')); drop parts absent from data.
    data_loc: list[str | int] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        if in_dict or (isinstance(node, list) and isinstance(part, int) and part < len(node)):
            data_loc.append(part)
            node = node[part]
    for cut in range(len(data_loc), -1, -1):
        if tuple(data_loc[:cut]) in lines:
            return lines[tuple(data_loc[:cut])]
    return None


def _data_path(loc: Loc, data: Any) -> str:
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            parts.append(str(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            item = node[part]
            parts.append(f"[{part}]" if not isinstance(item, dict) or "id" not in item else f"[{item['id']}]")
            node = item
        elif isinstance(part, str) and not isinstance(node, dict | list):
            continue
        elif isinstance(node, dict):
            # A key pydantic expected but that is missing, or a union tag we cannot see in the data.
            if part == _tag_of(node):
                continue
            parts.append(str(part))
            node = None
    text = ".".join(parts).replace(".[", "[")
    return text or "(top level)"


def _tag_of(node: dict[str, Any]) -> Any:
    for name in ("kind", "method", "format", "metric"):
        if name in node:
            return node[name]
    return None


def format_validation_error(
    error: ValidationError, model: type[BaseModel], data: Any, lines: dict[Loc, int], source: str
) -> list[OpenRecipeError]:
    problems: list[OpenRecipeError] = []
    for item in error.errors(include_url=False):
        raw_loc: Loc = tuple(item["loc"])
        loc = _walk_models(model, raw_loc)[0]
        kind = item["type"]
        line = _line_for(loc, lines, data)
        where = f"{source}:{line}" if line else source
        path = _data_path(loc, data)
        message = item["msg"]
        fix: str | None = None
        if kind == "extra_forbidden":
            owners = _models_at(model, raw_loc[:-1])
            allowed = sorted({name for owner in owners for name in owner.model_fields})
            suggestion = did_you_mean(str(loc[-1]), allowed)
            message = f"unknown key {path!r}"
            if suggestion:
                fix = f"did you mean {suggestion!r}? allowed keys: {', '.join(allowed)}"
            else:
                fix = f"allowed keys: {', '.join(allowed)}"
        elif kind == "missing":
            message = f"{path}: required field is missing"
            fix = f"add '{loc[-1]}:'"
        elif kind == "union_tag_invalid":
            context = item.get("ctx", {})
            tag = context.get("tag")
            expected = [t.strip(" '") for t in str(context.get("expected_tags", "")).split(",")]
            suggestion = did_you_mean(str(tag), expected)
            message = f"{path}: unknown {context.get('discriminator', 'kind').strip(chr(39))} {tag!r}"
            fix = (f"did you mean {suggestion!r}? " if suggestion else "") + f"available: {', '.join(expected)}"
        else:
            message = f"{path}: {message}"
            if "input" in item and kind not in ("model_type", "dict_type"):
                shown = repr(item["input"])
                if len(shown) < 60:
                    message += f" (got {shown})"
        problems.append(OpenRecipeError(message, where=where, fix=fix))
    return problems


def validate_config(model: type[M], data: Any, *, lines: dict[Loc, int] | None = None, source: str = "<config>") -> M:
    """Validate `data` against `model`, raising every problem at once as one user error."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = format_validation_error(error, model, data, lines or {}, source)
        noun = "problem" if len(problems) == 1 else "problems"
        raise MultipleErrors(problems, header=f"{source}: {len(problems)} {noun} found") from None
