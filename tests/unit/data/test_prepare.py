"""prepare_data streams its sources: the report accounts for every row, ignored field and second."""

import json
import random
import tracemalloc

from openrecipe.data.clean import CleanConfig
from openrecipe.data.config import DataSource
from openrecipe.data.minhash import band_layout
from openrecipe.data.prepare import prepare_data, read_prepared


def test_report_counts_ignored_fields_and_time_and_keeps_tools(tmp_path):
    chat = {
        "messages": [{"role": "user", "content": "Add 2 and 3"}, {"role": "assistant", "content": "5"}],
        "prompt_id": "p1",
    }
    tool_row = {
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "w", "arguments": "{}"}}]},
            {"role": "tool", "content": "sunny"},
            {"role": "assistant", "content": "Sunny."},
        ],
        "tools": [{"type": "function", "function": {"name": "w"}}],
    }
    source = tmp_path / "chat.jsonl"
    source.write_text("\n".join(json.dumps(row) for row in [chat, chat, tool_row]) + "\n")
    (tmp_path / "out").mkdir()
    stale = tmp_path / "out" / ".spill-123.jsonl.tmp"
    stale.write_text("left by a killed run")
    summary = prepare_data([DataSource(path=str(source))], tmp_path / "out", clean=CleanConfig(pii=False))
    assert summary["sources"]["chat.jsonl"]["ignored_fields"] == {"prompt_id": 2}
    assert summary["clean"]["removed"] == {"exact_duplicate": 1}
    assert summary["seconds"] >= 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| chat.jsonl | prompt_id | 2 |" in report and " s\n" in report
    records = read_prepared(tmp_path / "out" / "data.jsonl")
    assert records[1].tools == [{"type": "function", "function": {"name": "w"}}]
    assert records[1].messages[1]["tool_calls"][0]["function"] == {"name": "w", "arguments": {}}
    assert not stale.exists() and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "data.jsonl",
        "report.json",
        "report.md",
    ]


def test_memory_does_not_grow_with_the_corpus(tmp_path):
    rng = random.Random(0)
    words = [f"w{index}" for index in range(100_000)]
    corpus = tmp_path / "corpus.jsonl"
    with open(corpus, "w") as handle:
        for _ in range(500):
            handle.write(json.dumps({"text": " ".join(rng.choices(words, k=800)), "url": "u"}) + "\n")
    size = corpus.stat().st_size
    band_layout(0.85, 128)  # imports datasketch and scipy: not part of what is measured
    tracemalloc.start()
    try:
        summary = prepare_data([DataSource(path=str(corpus))], tmp_path / "out", clean=CleanConfig(pii=False))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary["clean"]["rows_out"] == 500
    assert size > 2_000_000 and peak < size / 5, (size, peak)
