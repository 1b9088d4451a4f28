"""Readers for every format users already have, behind one registry (`format:` in a recipe)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrecipe.config.common import Identity
from openrecipe.data.config import ColumnMap, DataSource, RoleTags
from openrecipe.data.containers import is_row_container, iter_rows
from openrecipe.data.jsonio import iter_text_lines, read_text_strict
from openrecipe.data.records import Record
from openrecipe.data.validation import (
    DataError,
    Rejections,
    check_turn_order,
    parse_tool_call,
    parse_tools,
    validate_messages,
)
from openrecipe.registry import Registry


@dataclass
class ReadContext:
    identity: Identity | None = None


Reader = Callable[[Path, DataSource, ReadContext, Rejections], Iterator[Record]]
READERS: Registry[Reader] = Registry("data format")

_PLACEHOLDER = re.compile(r"\{\{\s*(name|author)\s*\}\}")


def fill_placeholders(text: str, context: ReadContext, where: str) -> str:
    """LLaMA-Factory's identity files use {{name}} / {{author}}; fill them from the recipe's identity."""
    if "{{" not in text or not _PLACEHOLDER.search(text):
        return text
    if context.identity is None:
        raise DataError(
            "uses {{name}}/{{author}} placeholders but no identity is set",
            where=where,
            fix="add `identity: {name: ..., organization: ...}` to the recipe (or --name/--organization)",
        )
    values = {"name": context.identity.name, "author": context.identity.organization}
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def _require_object(row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise DataError(f"row must be a JSON object, got {type(row).__name__}", where=where)
    return row


def _check_fields(
    row: dict[str, Any], *, where: str, required: set[str], allowed: set[str], rejections: Rejections
) -> None:
    """Required fields must be there; other fields are counted (or refused with `unknown_fields: error`)."""
    missing = {key for key in required if row.get(key) is None}
    if missing:
        raise DataError(
            f"missing field {sorted(missing)[0]!r}",
            where=where,
            fix=f"each row needs: {', '.join(sorted(required))} (a `columns:` mapping can name other columns)",
        )
    rejections.fields.unknown(set(row) - allowed, where=where, allowed=allowed)


def _string(row: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = row.get(key, "")
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise DataError(f"must be a string, got {type(value).__name__}", where=where, field=key)
    return value


def _fill_all(messages: list[dict[str, Any]], context: ReadContext, where: str) -> list[dict[str, Any]]:
    for message in messages:
        message["content"] = fill_placeholders(message["content"], context, where)
    return messages


def _with_system(messages: list[dict[str, Any]], row: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    """A per-row system column, unless the conversation already starts with a system turn."""
    system = _string(row, key, where, required=False) if key in row else ""
    if system and messages and messages[0]["role"] != "system":
        return [{"role": "system", "content": system}, *messages]
    return messages


def _guarded(
    rows: Iterator[tuple[str, Any]], rejections: Rejections, convert: Callable[[str, Any], Record]
) -> Iterator[Record]:
    for where, row in rows:
        try:
            yield convert(where, row)
        except DataError as error:
            rejections.reject(error)


@READERS.register("messages")
def read_messages(path: Path, source: DataSource, context: ReadContext, rejections: Rejections) -> Iterator[Record]:
    """OpenAI chat fine-tuning format: messages (tool calls, tool turns, per-message weight) and tools."""
    messages_key, tools_key = source.column("messages", "messages"), source.column("tools", "tools")
    system_key = source.column("system", "system")
    allowed = {messages_key, tools_key, system_key, "functions", "id", "source"}

    def convert(where: str, row: Any) -> Record:
        row = _require_object(row, where)
        _check_fields(row, where=where, required={messages_key}, allowed=allowed, rejections=rejections)
        messages = validate_messages(row[messages_key], where=where, field_name=messages_key, policy=rejections.fields)
        messages = _fill_all(_with_system(messages, row, system_key, where), context, where)
        tools = parse_tools(row.get(tools_key) or row.get("functions"), where=where, field_name=tools_key)
        extra = {"source": _string(row, "source", where)} if row.get("source") is not None else {}
        return Record(messages=messages, tools=tools, where=where, extra=extra)

    return _guarded(iter_rows(path, rejections, split=source.split), rejections, convert)


@READERS.register("alpaca")
def read_alpaca(path: Path, source: DataSource, context: ReadContext, rejections: Rejections) -> Iterator[Record]:
    """Alpaca: instruction (+ optional input) → output; optional system, history and tools."""
    keys = {
        name: source.column(name, default)
        for name, default in (
            ("prompt", "instruction"),
            ("query", "input"),
            ("response", "output"),
            ("system", "system"),
            ("history", "history"),
            ("tools", "tools"),
        )
    }

    def convert(where: str, row: Any) -> Record:
        row = _require_object(row, where)
        _check_fields(
            row,
            where=where,
            required={keys["prompt"], keys["response"]},
            allowed=set(keys.values()),
            rejections=rejections,
        )
        instruction = _string(row, keys["prompt"], where)
        extra_input = _string(row, keys["query"], where, required=False)
        output = _string(row, keys["response"], where)
        prompt = f"{instruction}\n{extra_input}" if extra_input.strip() else instruction
        if not prompt.strip():
            raise DataError("empty instruction", where=where, field=keys["prompt"])
        messages: list[dict[str, Any]] = []
        if row.get(keys["system"]):
            messages.append({"role": "system", "content": _string(row, keys["system"], where)})
        for turn in row.get(keys["history"]) or []:
            if not (isinstance(turn, list) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
                raise DataError("history items must be [question, answer] pairs", where=where, field=keys["history"])
            messages += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
        messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
        check_turn_order(_fill_all(messages, context, where), where=where)
        tools = parse_tools(row.get(keys["tools"]), where=where, field_name=keys["tools"])
        return Record(messages=messages, tools=tools, where=where)

    return _guarded(iter_rows(path, rejections, split=source.split), rejections, convert)


SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "observation": "tool",
    "tool": "tool",
    "function_call": "function_call",
}


def _sharegpt_roles(tags: RoleTags) -> dict[str, str]:
    roles = dict(SHAREGPT_ROLES)
    roles.update(
        {
            tags.user_tag: "user",
            tags.assistant_tag: "assistant",
            tags.system_tag: "system",
            tags.observation_tag: "tool",
            tags.function_tag: "function_call",
        }
    )
    return roles


def _sharegpt_turn(role: str, value: Any, *, where: str, field: str) -> dict[str, Any]:
    if not isinstance(value, str):
        raise DataError("must be a string", where=where, field=field)
    if role != "function_call":
        return {"role": role, "content": value}
    try:
        calls = json.loads(value)
    except json.JSONDecodeError as error:
        raise DataError(f"a function call must be JSON ({error.msg})", where=where, field=field) from None
    calls = calls if isinstance(calls, list) else [calls]
    tool_calls = [parse_tool_call(call, where=where, path=f"{field}[{index}]") for index, call in enumerate(calls)]
    return {"role": "assistant", "content": "", "tool_calls": tool_calls}


@READERS.register("sharegpt")
def read_sharegpt(path: Path, source: DataSource, context: ReadContext, rejections: Rejections) -> Iterator[Record]:
    """ShareGPT: {"conversations": [{"from", "value"}]}, with function_call/observation turns as tool calls."""
    tags = source.tags or RoleTags()
    roles = _sharegpt_roles(tags)
    messages_key = source.column("messages", "conversations")
    system_key, tools_key = source.column("system", "system"), source.column("tools", "tools")
    allowed = {messages_key, system_key, tools_key, "id"}

    def convert(where: str, row: Any) -> Record:
        row = _require_object(row, where)
        _check_fields(row, where=where, required={messages_key}, allowed=allowed, rejections=rejections)
        turns = row[messages_key]
        if not isinstance(turns, list) or not turns:
            raise DataError("must be a non-empty list", where=where, field=messages_key)
        messages: list[dict[str, Any]] = []
        for index, turn in enumerate(turns):
            field = f"{messages_key}[{index}]"
            if not isinstance(turn, dict) or turn.get(tags.role_tag) is None or tags.content_tag not in turn:
                raise DataError(f"each turn needs `{tags.role_tag}` and `{tags.content_tag}`", where=where, field=field)
            speaker = turn[tags.role_tag]
            if speaker not in roles:
                raise DataError(
                    f"unsupported role {speaker!r}",
                    where=where,
                    field=f"{field}.{tags.role_tag}",
                    fix=f"known roles: {', '.join(sorted(roles))}; `tags:` maps other names",
                )
            rejections.fields.unknown(
                set(turn) - {tags.role_tag, tags.content_tag}, where=where, field=field, counted_as=f"{messages_key}[]."
            )
            messages.append(_sharegpt_turn(roles[speaker], turn[tags.content_tag], where=where, field=field))
        messages = _fill_all(_with_system(messages, row, system_key, where), context, where)
        check_turn_order(messages, where=where, field_name=messages_key)
        tools = parse_tools(row.get(tools_key), where=where, field_name=tools_key)
        return Record(messages=messages, tools=tools, where=where)

    return _guarded(iter_rows(path, rejections, split=source.split), rejections, convert)


QUESTION_COLUMNS = ("question", "q", "prompt", "instruction", "input", "user", "query", "问题")
ANSWER_COLUMNS = ("answer", "a", "response", "output", "reply", "assistant", "completion", "答案", "回答")
DELIMITERS = ",;\t|"


def _pick_columns(header: list[str], mapping: ColumnMap | None, where: str) -> ColumnMap:
    found = ", ".join(repr(h) for h in header)
    given_question = mapping and (mapping.question or mapping.prompt)
    given_answer = mapping and (mapping.answer or mapping.response)
    if mapping is not None:
        for key in ("question", "answer", "prompt", "response", "system"):
            column = getattr(mapping, key)
            if column is not None and column not in header:
                raise DataError(f"column {column!r} (columns.{key}) not found; columns are: {found}", where=where)

    def guess(candidates: tuple[str, ...], given: str | None, role: str) -> str:
        if given:
            return given
        matches = [h for h in header if h.strip().lower() in candidates]
        if len(matches) != 1:
            raise DataError(
                f"cannot tell which column is the {role}; columns are: {found}",
                where=where,
                fix="set `columns: {question: <column>, answer: <column>}` in the data source"
                + ("" if len(header) > 1 else ", or `delimiter:` if the file is not comma-separated"),
            )
        return matches[0]

    question = guess(QUESTION_COLUMNS, given_question or None, "question")
    answer = guess(ANSWER_COLUMNS, given_answer or None, "answer")
    system = mapping.system if mapping and mapping.system else ("system" if "system" in header else None)
    return ColumnMap(question=question, answer=answer, system=system)


def detect_delimiter(header_line: str, path: Path) -> str:
    """The delimiter of a CSV header: csv.Sniffer over the usual candidates, tab for .tsv, else comma."""
    if path.suffix.lower() == ".tsv":
        return "\t"
    try:
        return csv.Sniffer().sniff(header_line, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","


def _table_rows(path: Path, source: DataSource) -> tuple[list[str], Iterator[tuple[int, list[Any]]]]:
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        try:
            workbook = load_workbook(path, read_only=True, data_only=True)
        except Exception as error:
            raise DataError(f"cannot open as an Excel workbook ({error})", where=str(path)) from None
        if source.sheet is not None and source.sheet not in workbook.sheetnames:
            raise DataError(f"no sheet {source.sheet!r}; sheets are: {', '.join(workbook.sheetnames)}", where=str(path))
        sheet = workbook[source.sheet] if source.sheet else workbook.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        header_row = next(rows, None)
        if header_row is None:
            raise DataError("sheet is empty", where=str(path))
        header = ["" if cell is None else str(cell).strip() for cell in header_row]
        while header and not header[-1]:
            header.pop()
        return header, ((number, list(row)) for number, row in enumerate(rows, start=2))
    text = read_text_strict(path)
    delimiter = source.delimiter or detect_delimiter(text.split("\n", 1)[0], path)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [column.strip() for column in next(reader)]

    def rows() -> Iterator[tuple[int, list[Any]]]:
        for row in reader:
            yield reader.line_num, row

    return header, rows()


@READERS.register("table")
def read_table(path: Path, source: DataSource, context: ReadContext, rejections: Rejections) -> Iterator[Record]:
    """CSV/TSV or XLSX with a question and an answer column (mapped by `columns:` or recognized by name)."""
    header, rows = _table_rows(path, source)
    columns = _pick_columns(header, source.columns, f"{path}:1")
    index = {name: position for position, name in enumerate(header)}
    used = {columns.question, columns.answer, columns.system}
    rejections.fields.unknown({name for name in header if name and name not in used}, where=f"{path}:1")
    for number, row in rows:
        if all(cell is None or str(cell).strip() == "" for cell in row):
            continue
        where = f"{path}:{number}"
        rejections.rows_seen += 1

        def cell(column: str | None, row: list[Any] = row) -> str:
            if column is None:
                return ""
            position = index[column]
            value = row[position] if position < len(row) else None
            return "" if value is None else str(value).strip()

        try:
            if any(value is not None and str(value).strip() for value in row[len(header) :]):
                raise DataError(
                    f"row has {len(row)} cells but the header has {len(header)}",
                    where=where,
                    fix="quote cells that contain the delimiter, or set `delimiter:` in the data source",
                )
            question, answer, system = cell(columns.question), cell(columns.answer), cell(columns.system)
            if not question:
                raise DataError("empty question", where=where, field=columns.question)
            if not answer:
                raise DataError("empty assistant reply", where=where, field=columns.answer)
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": fill_placeholders(question, context, where)},
                {"role": "assistant", "content": fill_placeholders(answer, context, where)},
            ]
            yield Record(messages=messages, where=where)
        except DataError as error:
            rejections.reject(error)


TEXT_SUFFIXES = (".txt", ".md")


def _has_paragraph_break(path: Path) -> bool:
    """Whether any line after the first is blank (what `auto` splitting keys on), read as a stream."""
    with open(path, "rb") as handle:
        next(handle, None)
        return any(not line.strip() and line.endswith(b"\n") for line in handle)


def iter_text_documents(path: Path, mode: str) -> Iterator[tuple[int, str]]:
    """(first line, document) pairs of a text file, streamed line by line except in `file` mode."""
    if mode == "file":
        text = read_text_strict(path).strip()
        if text:
            yield 1, text
        return
    if mode == "auto":
        mode = "paragraph" if _has_paragraph_break(path) else "line"
    paragraph: list[str] = []
    start = 0
    for number, line in iter_text_lines(path):
        if mode == "line":
            if line.strip():
                yield number, line.strip()
            continue
        if line.strip():
            if not paragraph:
                start = number
            paragraph.append(line)
        elif paragraph:
            yield start, "\n".join(paragraph).strip()
            paragraph = []
    if paragraph:
        yield start, "\n".join(paragraph).strip()


def text_files(path: Path) -> list[Path]:
    """The .txt/.md files of a folder; a dataset card (README.md) beside data files is not text to train on."""
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in TEXT_SUFFIXES and p.is_file())
    if files and is_row_container(path):
        files = [file for file in files if file.name.lower() != "readme.md"]
    return files


@READERS.register("text")
def read_text(path: Path, source: DataSource, context: ReadContext, rejections: Rejections) -> Iterator[Record]:
    """Corpora for continued pretraining: .txt/.md files or folders, or rows with a text column."""
    if path.is_dir() and text_files(path):
        for file in text_files(path):
            yield from read_text(file, source, context, rejections)
        return
    if path.is_dir() or path.suffix.lower() not in TEXT_SUFFIXES:
        if path.is_dir() and not is_row_container(path):
            raise DataError("folder has no .txt, .md or data files", where=str(path))
        yield from _read_text_rows(path, source, rejections)
        return
    mode = "file" if source.text_split == "auto" and path.suffix.lower() == ".md" else source.text_split
    for number, document in iter_text_documents(path, mode):
        rejections.rows_seen += 1
        yield Record(text=document, where=f"{path}:{number}")


def _read_text_rows(path: Path, source: DataSource, rejections: Rejections) -> Iterator[Record]:
    text_key = source.column("text", source.text_field)
    for where, row in iter_rows(path, rejections, split=source.split):
        try:
            row = _require_object(row, where)
            if row.get(text_key) is None:
                raise DataError(
                    f"missing field {text_key!r}",
                    where=where,
                    fix="set `text_field:` (or `columns: {text: ...}`) to the field that holds the text",
                )
            rejections.fields.unknown(set(row) - {text_key, "source"}, where=where, allowed={text_key})
            text = _string(row, text_key, where)
            if not text.strip():
                raise DataError("empty text", where=where, field=text_key)
            yield Record(text=text, where=where)
        except DataError as error:
            rejections.reject(error)
