"""Readers for every format users already have, behind one registry (`format:` in a recipe)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrecipe.config.common import Identity
from openrecipe.data.config import ColumnMap, DataSource
from openrecipe.data.jsonio import iter_json_rows, read_text_strict
from openrecipe.data.records import Record
from openrecipe.data.validation import DataError, Rejections, check_turn_order, validate_messages
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


def _check_fields(row: dict[str, Any], *, where: str, required: set[str], allowed: set[str]) -> None:
    missing = required - row.keys()
    if missing:
        raise DataError(
            f"missing field {sorted(missing)[0]!r}",
            where=where,
            fix=f"each row needs: {', '.join(sorted(required))}",
        )
    extra = set(row) - allowed
    if extra:
        raise DataError(
            f"extra field {sorted(extra)[0]!r}",
            where=where,
            fix=f"allowed fields: {', '.join(sorted(allowed))}",
        )


def _string(row: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = row.get(key, "")
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise DataError(f"must be a string, got {type(value).__name__}", where=where, field=key)
    return value


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
    """OpenAI chat format: {"messages": [{"role", "content"}, ...]} per row."""

    def convert(where: str, row: Any) -> Record:
        row = _require_object(row, where)
        _check_fields(row, where=where, required={"messages"}, allowed={"messages", "id", "source"})
        messages = validate_messages(row["messages"], where=where)
        for message in messages:
            message["content"] = fill_placeholders(message["content"], context, where)
        extra = {"source": _string(row, "source", where)} if "source" in row else {}
        return Record(messages=messages, where=where, extra=extra)

    return _guarded(iter_json_rows(path, rejections), rejections, convert)


@READERS.register("alpaca")
def read_alpaca(path: Path, source: DataSource, context: ReadContext, rejections: Rejections) -> Iterator[Record]:
    """Alpaca: instruction (+ optional input) → output; optional system and history."""

    def convert(where: str, row: Any) -> Record:
        row = _require_object(row, where)
        _check_fields(
            row,
            where=where,
            required={"instruction", "output"},
            allowed={"instruction", "input", "output", "system", "history"},
        )
        instruction = _string(row, "instruction", where)
        extra_input = _string(row, "input", where, required=False)
        output = _string(row, "output", where)
        prompt = f"{instruction}\n{extra_input}" if extra_input.strip() else instruction
        if not prompt.strip():
            raise DataError("empty instruction", where=where, field="instruction")
        messages: list[dict[str, str]] = []
        if row.get("system"):
            messages.append({"role": "system", "content": _string(row, "system", where)})
        for turn in row.get("history") or []:
            if not (isinstance(turn, list) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
                raise DataError("history items must be [question, answer] pairs", where=where, field="history")
            messages += [{"role": "user", "content": turn[0]}, {"role": "assistant", "content": turn[1]}]
        messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
        for message in messages:
            message["content"] = fill_placeholders(message["content"], context, where)
        check_turn_order(messages, where=where)
        return Record(messages=messages, where=where)

    return _guarded(iter_json_rows(path, rejections), rejections, convert)


SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
}


@READERS.register("sharegpt")
def read_sharegpt(path: Path, source: DataSource, context: ReadContext, rejections: Rejections) -> Iterator[Record]:
    """ShareGPT: {"conversations": [{"from": "human"|"gpt"|"system", "value": ...}]}."""

    def convert(where: str, row: Any) -> Record:
        row = _require_object(row, where)
        _check_fields(row, where=where, required={"conversations"}, allowed={"conversations", "system", "tools", "id"})
        turns = row["conversations"]
        if not isinstance(turns, list) or not turns:
            raise DataError("must be a non-empty list", where=where, field="conversations")
        messages: list[dict[str, str]] = []
        if row.get("system"):
            messages.append({"role": "system", "content": _string(row, "system", where)})
        for index, turn in enumerate(turns):
            field = f"conversations[{index}]"
            if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
                raise DataError("each turn needs `from` and `value`", where=where, field=field)
            speaker = turn["from"]
            if speaker not in SHAREGPT_ROLES:
                raise DataError(
                    f"unsupported role {speaker!r}",
                    where=where,
                    field=f"{field}.from",
                    fix="supported: human, gpt, system (tool-call turns are not supported yet)",
                )
            if not isinstance(turn["value"], str):
                raise DataError("must be a string", where=where, field=f"{field}.value")
            messages.append(
                {"role": SHAREGPT_ROLES[speaker], "content": fill_placeholders(turn["value"], context, where)}
            )
        check_turn_order(messages, where=where, field_name="conversations")
        return Record(messages=messages, where=where)

    return _guarded(iter_json_rows(path, rejections), rejections, convert)


QUESTION_COLUMNS = ("question", "q", "prompt", "instruction", "input", "user", "query", "问题")
ANSWER_COLUMNS = ("answer", "a", "response", "output", "reply", "assistant", "completion", "答案", "回答")


def _pick_columns(header: list[str], mapping: ColumnMap | None, where: str) -> ColumnMap:
    found = ", ".join(repr(h) for h in header)
    if mapping is not None and mapping.question and mapping.answer:
        for key in ("question", "answer", "system"):
            column = getattr(mapping, key)
            if column is not None and column not in header:
                raise DataError(f"column {column!r} (columns.{key}) not found; columns are: {found}", where=where)
        return mapping

    def guess(candidates: tuple[str, ...], given: str | None, role: str) -> str:
        if given:
            return given
        matches = [h for h in header if h.strip().lower() in candidates]
        if len(matches) != 1:
            raise DataError(
                f"cannot tell which column is the {role}; columns are: {found}",
                where=where,
                fix="set `columns: {question: <column>, answer: <column>}` in the data source",
            )
        return matches[0]

    question = guess(QUESTION_COLUMNS, mapping.question if mapping else None, "question")
    answer = guess(ANSWER_COLUMNS, mapping.answer if mapping else None, "answer")
    system = mapping.system if mapping else ("system" if "system" in header else None)
    return ColumnMap(question=question, answer=answer, system=system)


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
        return header, ((number, list(row)) for number, row in enumerate(rows, start=2))
    text = read_text_strict(path)
    reader = csv.reader(io.StringIO(text))
    header = [column.strip() for column in next(reader)]

    def rows() -> Iterator[tuple[int, list[Any]]]:
        for row in reader:
            yield reader.line_num, row

    return header, rows()


@READERS.register("table")
def read_table(path: Path, source: DataSource, context: ReadContext, rejections: Rejections) -> Iterator[Record]:
    """CSV or XLSX with a question and an answer column (mapped by `columns:` or recognized by name)."""
    header, rows = _table_rows(path, source)
    columns = _pick_columns(header, source.columns, f"{path}:1")
    index = {name: position for position, name in enumerate(header)}
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


def _split_text(text: str, mode: str) -> list[str]:
    if mode == "file":
        return [text.strip()] if text.strip() else []
    if mode == "auto":
        mode = "paragraph" if re.search(r"\n\s*\n", text) else "line"
    separator = r"\n\s*\n" if mode == "paragraph" else r"\n"
    return [part.strip() for part in re.split(separator, text) if part.strip()]


@READERS.register("text")
def read_text(path: Path, source: DataSource, context: ReadContext, rejections: Rejections) -> Iterator[Record]:
    """Corpora for continued pretraining: .txt/.md files or folders, or JSONL with a text field."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".txt", ".md") and p.is_file())
        if not files:
            raise DataError("folder has no .txt or .md files", where=str(path))
        for file in files:
            yield from read_text(file, source, context, rejections)
        return
    if path.suffix.lower() in (".jsonl", ".json"):
        for where, row in iter_json_rows(path, rejections):
            try:
                row = _require_object(row, where)
                if source.text_field not in row:
                    raise DataError(
                        f"missing field {source.text_field!r}",
                        where=where,
                        fix="set `text_field:` to the field that holds the text",
                    )
                text = _string(row, source.text_field, where)
                if not text.strip():
                    raise DataError("empty text", where=where, field=source.text_field)
                yield Record(text=text, where=where)
            except DataError as error:
                rejections.reject(error)
        return
    text = read_text_strict(path)
    mode = "file" if source.text_split == "auto" and path.suffix.lower() == ".md" else source.text_split
    for part in _split_text(text, mode):
        rejections.rows_seen += 1
        yield Record(text=part, where=str(path))
