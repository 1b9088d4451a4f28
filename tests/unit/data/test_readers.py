import json
from pathlib import Path

import pytest

from openrecipe.config.common import Identity
from openrecipe.data.config import ColumnMap, DataSource
from openrecipe.data.load import detect_format, load_source
from openrecipe.data.validation import DataError
from openrecipe.errors import OpenRecipeError

NOVA = Identity(name="Nova", organization="Acme Corp")


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))
    return path


def chat(q="hi", a="hello"):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def load(path, **kwargs):
    return load_source(DataSource(path=str(path), **kwargs), identity=kwargs.pop("identity", None))


def test_messages_jsonl_multiturn_with_system(tmp_path):
    row = {
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
            {"role": "assistant", "content": "d"},
        ]
    }
    loaded = load(jsonl(tmp_path / "m.jsonl", [row, chat()]))
    assert loaded.format == "messages"
    assert [m["role"] for m in loaded.records[0].messages] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert loaded.records[1].where.endswith("m.jsonl:2")


def test_bom_is_handled(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(chat()).encode() + b"\n")
    assert len(load(path).records) == 1


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "invalid JSON"),
        (json.dumps({"messages": []}), "messages: is empty"),
        (json.dumps({"messages": [{"role": "user", "content": "q"}]}), "missing assistant reply"),
        (
            json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]}),
            "empty assistant reply",
        ),
        (
            json.dumps({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]}),
            "roles out of order",
        ),
        (
            json.dumps({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "a"}]}),
            "must be a string, got int",
        ),
        (json.dumps({"messages": [{"role": "bot", "content": "q"}]}), "unknown role 'bot'"),
        (json.dumps({"messages": [{"role": "user"}]}), "missing field 'content'"),
        (json.dumps({"msgs": []}), "missing field 'messages'"),
        ("[1, 2]", "row must be a JSON object"),
    ],
)
def test_strict_validation_names_file_line_and_reason(tmp_path, line, reason):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(chat()) + "\n\n" + line + "\n")
    with pytest.raises(DataError) as info:
        load(path, format="messages")
    assert info.value.where == f"{path}:3"
    assert reason in info.value.format()


def test_extra_columns_are_counted_and_refused_only_when_asked(tmp_path):
    path = jsonl(tmp_path / "m.jsonl", [chat(), {**chat(), "score": 1, "prompt_id": "x"}])
    loaded = load(path)
    assert len(loaded.records) == 2
    assert loaded.rejections.to_json()["ignored_fields"] == {"prompt_id": 1, "score": 1}
    with pytest.raises(DataError, match=r"m.jsonl:2: extra field 'prompt_id'"):
        load(path, unknown_fields="error")


def test_not_utf8_reports_line(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(json.dumps(chat()).encode() + b"\n" + '{"messages": "caf\xe9"}'.encode("latin-1") + b"\n")
    with pytest.raises(DataError, match=r"latin.jsonl:2: not UTF-8"):
        load(path, format="messages")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(DataError, match="file is empty"):
        load(path, format="messages")


def test_skip_mode_counts_every_rejection_and_still_fails_past_threshold(tmp_path):
    rows = [chat(str(i)) for i in range(18)] + ["{bad", {"messages": [{"role": "user", "content": "q"}]}]
    path = jsonl(tmp_path / "m.jsonl", rows)
    loaded = load(path, format="messages", on_error="skip")
    assert len(loaded.records) == 18
    assert loaded.rejections.to_json()["by_reason"] == {
        "invalid JSON (Expecting property name enclosed in double quotes at column 2)": 1,
        "missing assistant reply (the last message is from the user)": 1,
    }
    with pytest.raises(OpenRecipeError, match="2 of 20 rows rejected"):
        load(path, format="messages", on_error="skip", max_rejected_fraction=0.05)


def test_alpaca_array_lines_and_placeholders(tmp_path):
    rows = [
        {"instruction": "Who are you?", "input": "", "output": "I am {{name}} by {{author}}."},
        {"instruction": "Sum", "input": "1+1", "output": "2", "system": "math"},
    ]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(rows, indent=2))
    loaded = load_source(DataSource(path=str(path)), identity=NOVA)
    assert loaded.format == "alpaca"
    assert loaded.records[0].messages[1]["content"] == "I am Nova by Acme Corp."
    assert loaded.records[1].messages[0] == {"role": "system", "content": "math"}
    assert loaded.records[1].messages[1]["content"] == "Sum\n1+1"
    assert loaded.records[1].where == f"{path}:7"
    with pytest.raises(DataError, match=r"a.json:2: uses \{\{name\}\}"):
        load(path)


def test_alpaca_bad_element_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n  {"instruction": "q", "output": "a"},\n  {"instruction": "q"}\n]\n')
    with pytest.raises(DataError, match=r"a.json:3: missing field 'output'"):
        load(path)


def test_sharegpt(tmp_path):
    row = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}], "system": "s"}
    loaded = load(jsonl(tmp_path / "s.jsonl", [row]))
    assert loaded.format == "sharegpt"
    assert loaded.records[0].messages == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
    ]


def test_csv_with_auto_columns_and_errors(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text('Question,Answer\nHow?,"Like, this."\n\nWhy?,\n')
    with pytest.raises(DataError, match=r"faq.csv:4: Answer: empty assistant reply"):
        load(path)
    loaded = load(path, on_error="skip", max_rejected_fraction=0.5)
    assert loaded.records[0].messages[1]["content"] == "Like, this."


def test_csv_ambiguous_columns_lists_them(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(
        DataError, match=r"t.csv:1: cannot tell which column is the question; columns are: 'a', 'b', 'c'"
    ):
        load(path)
    loaded = load(path, columns=ColumnMap(question="a", answer="c"))
    assert loaded.records[0].messages == [
        {"role": "user", "content": "1"},
        {"role": "assistant", "content": "3"},
    ]
    with pytest.raises(DataError, match="column 'z'"):
        load(path, columns=ColumnMap(question="z", answer="c"))


def test_xlsx(tmp_path):
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["问题", "答案"])
    sheet.append(["你好", "你好！"])
    sheet.append(["价格", 42])
    path = tmp_path / "faq.xlsx"
    workbook.save(path)
    loaded = load(path)
    assert loaded.format == "table"
    assert loaded.records[1].messages[1]["content"] == "42"
    assert loaded.records[1].where == f"{path}:3"


def test_text_files_folders_and_jsonl(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.md").write_text("# Title\n\nBody one.\n")
    (folder / "b.txt").write_text("para one\n\npara two\n")
    loaded = load(folder)
    assert [r.text for r in loaded.records] == ["# Title\n\nBody one.", "para one", "para two"]
    corpus = jsonl(tmp_path / "c.jsonl", [{"text": "doc"}, {"body": "x"}])
    with pytest.raises(DataError, match=r"c.jsonl:2: missing field 'text'"):
        load(corpus)


def test_detect_format_unknown_keys(tmp_path):
    path = jsonl(tmp_path / "x.jsonl", [{"foo": 1}])
    with pytest.raises(DataError, match=r"first row's fields \(foo\)"):
        detect_format(path)


def test_missing_file_and_offline_hub(tmp_path, monkeypatch):
    from huggingface_hub import constants

    with pytest.raises(OpenRecipeError, match="data file not found"):
        load(tmp_path / "nope.csv")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OpenRecipeError, match="HF_HUB_OFFLINE"):
        load("someone/some-dataset")


def test_peer_files_from_llamafactory(peer_data):
    identity = load_source(DataSource(path=str(peer_data / "llamafactory-identity.json")), identity=NOVA)
    assert len(identity.records) == 91
    assert all("{{" not in m["content"] for r in identity.records for m in r.messages)
    assert any("Nova" in r.messages[-1]["content"] for r in identity.records)
    alpaca = load(peer_data / "llamafactory-alpaca_en_demo.json")
    assert alpaca.format == "alpaca" and len(alpaca.records) > 900
    c4 = load(peer_data / "llamafactory-c4_demo.jsonl")
    assert c4.format == "text" and len(c4.records) > 100
    wiki = load(peer_data / "llamafactory-wiki_demo.txt")
    assert len(wiki.records) == 30  # one article per line, no blank lines: split by line
    # Tool-call turns become assistant tool_calls and tool results; every row reads.
    glaive = load(peer_data / "llamafactory-glaive_toolcall_en_demo.json")
    assert glaive.format == "sharegpt"
    assert glaive.rejections.total == 0 and len(glaive.records) == glaive.rejections.rows_seen
    calling = [r for r in glaive.records if any(m.get("tool_calls") for m in r.messages)]
    assert calling and all(r.tools for r in calling)
    roles = [m["role"] for m in calling[0].messages]
    assert roles[roles.index("tool") - 1] == "assistant" and roles[-1] == "assistant"
    call = next(m for m in calling[0].messages if m.get("tool_calls"))["tool_calls"][0]["function"]
    assert isinstance(call["name"], str) and isinstance(call["arguments"], dict)
