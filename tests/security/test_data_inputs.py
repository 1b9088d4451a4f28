"""Data files that used to mislead: other CSV delimiters, extra cells, NUL bytes, UTF-16, deep JSON."""

from __future__ import annotations

import json

import pytest

from openrecipe.data.config import DataSource
from openrecipe.data.load import load_source
from openrecipe.data.validation import DataError


def load(path, **kwargs):
    return load_source(DataSource(path=str(path), **kwargs))


def test_semicolon_and_tab_csv_are_detected(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text("question;answer\nHow much?;Ten, euros.\n", encoding="utf-8")
    assert load(path).records[0].messages[1]["content"] == "Ten, euros."
    tsv = tmp_path / "faq.tsv"
    tsv.write_text("question\tanswer\nWhy?\tBecause; reasons.\n")
    assert load(tsv).records[0].messages[1]["content"] == "Because; reasons."


def test_delimiter_option_wins(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("question|answer\nA, B?|C; D.\n")
    assert load(path, delimiter="|").records[0].messages == [
        {"role": "user", "content": "A, B?"},
        {"role": "assistant", "content": "C; D."},
    ]


def test_extra_cells_are_reported_not_dropped(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text("question,answer\nHow?,Like this\nPrice?,10,00 EUR\n")
    with pytest.raises(DataError, match=r"faq.csv:3: row has 3 cells but the header has 2.*delimiter"):
        load(path)
    loaded = load(path, on_error="skip", max_rejected_fraction=0.5)
    assert len(loaded.records) == 1
    assert loaded.rejections.counts == {"row has 3 cells but the header has 2": 1}


def test_unused_csv_columns_are_counted(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text("id,question,answer,notes\n1,How?,Like this,internal\n")
    loaded = load(path)
    assert loaded.rejections.to_json()["ignored_fields"] == {"id": 1, "notes": 1}


def test_nul_bytes_are_reported_as_such(tmp_path):
    row = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    path = tmp_path / "nul.jsonl"
    path.write_bytes(row.encode() + b"\n" + row.encode()[:20] + b"\x00" + row.encode()[20:] + b"\n")
    with pytest.raises(DataError, match=r"nul.jsonl:2: contains a NUL byte"):
        load(path)
    first = tmp_path / "first.jsonl"
    first.write_bytes(b"\x00" + row.encode() + b"\n")
    with pytest.raises(DataError, match=r"first.jsonl:1: contains a NUL byte"):
        load(first)
    text = tmp_path / "t.txt"
    text.write_bytes(b"hello\nwor\x00ld\n")
    with pytest.raises(DataError, match=r"t.txt:2: contains a NUL byte"):
        load(text)
    utf16 = tmp_path / "u.jsonl"
    utf16.write_bytes((row + "\n").encode("utf-16"))
    with pytest.raises(DataError, match="UTF-16"):
        load(utf16)


def test_deeply_nested_json_is_a_row_error(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(DataError, match="deep.jsonl:1: JSON nested too deeply"):
        load(path, format="messages")
