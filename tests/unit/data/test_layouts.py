"""Public dataset layouts, written by hand to match each format's published shape."""

import json
from pathlib import Path

import pytest

from openrecipe.data.config import ColumnMap, DataSource, RoleTags
from openrecipe.data.load import load_source
from openrecipe.data.validation import DataError


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def load(path, **kwargs):
    return load_source(DataSource(path=str(path), **kwargs))


# tatsu-lab/alpaca carries a pre-rendered `text` column next to instruction/input/output.
ALPACA_WITH_TEXT = {
    "instruction": "Give three tips for staying healthy.",
    "input": "",
    "output": "1. Eat a balanced diet.\n2. Exercise regularly.\n3. Get enough sleep.",
    "text": "Below is an instruction that describes a task. ...",
}

# HuggingFaceH4/ultrachat_200k rows: prompt, prompt_id and the full messages list.
ULTRACHAT = {
    "prompt": "How does photosynthesis work?",
    "prompt_id": "0f2a9c",
    "messages": [
        {"role": "user", "content": "How does photosynthesis work?"},
        {"role": "assistant", "content": "Plants turn light, water and CO2 into sugar and oxygen."},
        {"role": "user", "content": "Where does it happen?"},
        {"role": "assistant", "content": "In the chloroplasts of leaf cells."},
    ],
}

# OpenAI's chat fine-tuning format with function calling and per-message weight.
OPENAI_TOOLS = {
    "messages": [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "Let me check that.", "weight": 0},
        {"role": "user", "content": "Please do."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18}'},
        {"role": "assistant", "content": "It is 18 °C in Paris."},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ],
    "parallel_tool_calls": False,
}

# LLaMA-Factory's ShareGPT tool-call rows (glaive_toolcall): tools as a JSON string.
SHAREGPT_TOOLS = {
    "conversations": [
        {"from": "human", "value": "Convert 10 USD to EUR."},
        {"from": "function_call", "value": '{"name": "convert", "arguments": {"amount": 10, "to": "EUR"}}'},
        {"from": "observation", "value": '{"result": 9.2}'},
        {"from": "gpt", "value": "10 USD is 9.20 EUR."},
    ],
    "tools": '[{"name": "convert", "description": "Convert money", "parameters": {"type": "object"}}]',
}


def test_alpaca_extra_text_column_is_ignored_and_counted(tmp_path):
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps([ALPACA_WITH_TEXT, {**ALPACA_WITH_TEXT, "instruction": "Name a color."}]))
    loaded = load(path)
    assert loaded.format == "alpaca" and len(loaded.records) == 2
    assert loaded.records[0].messages[-1]["content"].startswith("1. Eat")
    assert loaded.rejections.to_json()["ignored_fields"] == {"text": 2}
    with pytest.raises(DataError, match=r"alpaca.json:1: extra field 'text'.*unknown_fields"):
        load(path, unknown_fields="error")


def test_ultrachat_layout(tmp_path):
    loaded = load(jsonl(tmp_path / "ultrachat.jsonl", [ULTRACHAT]))
    assert loaded.format == "messages"
    assert [m["role"] for m in loaded.records[0].messages] == ["user", "assistant", "user", "assistant"]
    assert loaded.rejections.to_json()["ignored_fields"] == {"prompt": 1, "prompt_id": 1}


def test_openai_fine_tuning_format_in_full(tmp_path):
    record = load(jsonl(tmp_path / "openai.jsonl", [OPENAI_TOOLS])).records[0]
    messages = record.messages
    assert messages[2] == {"role": "assistant", "content": "Let me check that.", "weight": 0}
    assert messages[4]["content"] == ""
    assert messages[4]["tool_calls"] == [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}, "id": "call_1"}
    ]
    assert messages[5] == {"role": "tool", "content": '{"temp_c": 18}', "tool_call_id": "call_1"}
    assert record.tools[0]["function"]["name"] == "get_weather"
    assert record.to_json()["tools"] == record.tools


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m: m[2].update(weight=0.5), "weight: must be 0 or 1"),
        (lambda m: m[1].update(weight=0), "only assistant messages carry a weight"),
        (lambda m: m[4]["tool_calls"][0]["function"].update(arguments="{city"), "arguments are not valid JSON"),
        (lambda m: m.pop(5), "roles out of order: message 5 is 'assistant', expected 'tool'"),
        (lambda m: m.insert(2, {"role": "tool", "content": "x"}), "expected 'assistant'"),
    ],
)
def test_openai_format_errors_name_the_message(tmp_path, change, reason):
    row = json.loads(json.dumps(OPENAI_TOOLS))
    change(row["messages"])
    with pytest.raises(DataError, match=reason):
        load(jsonl(tmp_path / "bad.jsonl", [row]))


def test_sharegpt_function_call_and_observation_map_to_tool_calls(tmp_path):
    record = load(jsonl(tmp_path / "glaive.jsonl", [SHAREGPT_TOOLS])).records[0]
    assert record.messages == [
        {"role": "user", "content": "Convert 10 USD to EUR."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"type": "function", "function": {"name": "convert", "arguments": {"amount": 10, "to": "EUR"}}}
            ],
        },
        {"role": "tool", "content": '{"result": 9.2}'},
        {"role": "assistant", "content": "10 USD is 9.20 EUR."},
    ]
    assert record.tools == [
        {
            "type": "function",
            "function": {"name": "convert", "description": "Convert money", "parameters": {"type": "object"}},
        }
    ]


def test_column_and_role_mapping(tmp_path):
    rows = [
        {
            "dialog": [{"speaker": "me", "text": "Hi"}, {"speaker": "bot", "text": "Hello!"}],
            "persona": "Be brief.",
        }
    ]
    tags = RoleTags(role_tag="speaker", content_tag="text", user_tag="me", assistant_tag="bot")
    loaded = load(
        jsonl(tmp_path / "d.jsonl", rows),
        format="sharegpt",
        columns=ColumnMap(messages="dialog", system="persona"),
        tags=tags,
    )
    assert loaded.records[0].messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    alpaca = jsonl(tmp_path / "a.jsonl", [{"q": "2+2?", "a": "4", "ctx": "math"}])
    record = load(alpaca, format="alpaca", columns=ColumnMap(prompt="q", response="a", query="ctx")).records[0]
    assert record.messages == [{"role": "user", "content": "2+2?\nmath"}, {"role": "assistant", "content": "4"}]
    corpus = jsonl(tmp_path / "c.jsonl", [{"body": "A document.", "url": "u"}])
    assert load(corpus, format="text", columns=ColumnMap(text="body")).records[0].text == "A document."


def test_dataset_info_json_entries(tmp_path):
    jsonl(
        tmp_path / "chat.jsonl", [{"msgs": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}]
    )
    jsonl(tmp_path / "c4.jsonl", [{"text": "Some web text.", "timestamp": "2019", "url": "u"}])
    (tmp_path / "identity.json").write_text(json.dumps([{"instruction": "Who?", "input": "", "output": "Me."}]))
    info = {
        "identity": {"file_name": "identity.json"},
        "chat": {
            "file_name": "chat.jsonl",
            "formatting": "sharegpt",
            "columns": {"messages": "msgs"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
        },
        "c4_demo": {"file_name": "c4.jsonl", "columns": {"prompt": "text"}},
        "remote": {"hf_hub_url": "someone/remote"},
    }
    registry = tmp_path / "dataset_info.json"
    registry.write_text(json.dumps(info))
    chat = load(registry, dataset="chat")
    assert chat.format == "sharegpt" and chat.records[0].messages[1] == {"role": "assistant", "content": "Yo"}
    assert chat.source.label == "chat"
    assert load(registry, dataset="identity").records[0].messages[-1]["content"] == "Me."
    c4 = load(registry, dataset="c4_demo")
    assert c4.format == "text" and c4.records[0].text == "Some web text."
    with pytest.raises(DataError, match=r"no dataset 'chta'.*did you mean 'chat'"):
        load(registry, dataset="chta")
    with pytest.raises(DataError, match="4 entries; which one"):
        load(registry)


def test_parquet_arrow_and_saved_datasets(tmp_path):
    import datasets

    rows = [ULTRACHAT, {**ULTRACHAT, "prompt_id": "second"}]
    table = datasets.Dataset.from_list(rows)
    table.to_parquet(str(tmp_path / "train.parquet"))
    parquet = load(tmp_path / "train.parquet")
    assert parquet.format == "messages" and len(parquet.records) == 2
    assert parquet.records[1].where == f"{tmp_path / 'train.parquet'}:row 2"
    clone = tmp_path / "clone"  # a hub dataset's folder: its card and its data files
    (clone / "data").mkdir(parents=True)
    (clone / "README.md").write_text("---\nlicense: mit\n---\n# A dataset card\n")
    table.to_parquet(str(clone / "data" / "train-00000-of-00001.parquet"))
    assert load(clone).format == "messages" and len(load(clone).records) == 2
    table.save_to_disk(str(tmp_path / "saved"))
    saved = load(tmp_path / "saved")
    assert saved.format == "messages" and len(saved.records) == 2
    # Arrow fills absent struct fields with null (here: `weight` only on one message): read as absent.
    sparse = [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 1}]},
        {"messages": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]},
    ]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(sparse), "test": table}).save_to_disk(
        str(tmp_path / "dd")
    )
    split = load(tmp_path / "dd")
    assert [r.messages[0] for r in split.records] == [
        {"role": "user", "content": "q"},
        {"role": "user", "content": "q2"},
    ]
    assert len(load(tmp_path / "dd", split="test").records) == 2
    with pytest.raises(DataError, match="no split 'validation'"):
        load(tmp_path / "dd", split="validation")


def test_cached_hub_dataset_is_read_offline(tmp_path, monkeypatch):
    import datasets
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "datasets--acme--faq"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    data = repo / "snapshots" / commit / "data"
    data.mkdir(parents=True)
    datasets.Dataset.from_list([ALPACA_WITH_TEXT]).to_parquet(str(data / "train-00000-of-00001.parquet"))
    datasets.Dataset.from_list([ALPACA_WITH_TEXT] * 3).to_parquet(str(data / "test-00000-of-00001.parquet"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    loaded = load("acme/faq")
    assert loaded.format == "alpaca" and len(loaded.records) == 1
    assert len(load("acme/faq", split="test").records) == 3
    zh = repo / "snapshots" / commit / "zh"
    zh.mkdir()
    datasets.Dataset.from_list([ALPACA_WITH_TEXT] * 2).to_parquet(str(zh / "train-00000-of-00001.parquet"))
    assert len(load("acme/faq", subset="zh").records) == 2
    with pytest.raises(DataError, match="no files of subset 'fr'"):
        load("acme/faq", subset="fr")
