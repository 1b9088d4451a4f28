"""`openrecipe eval` end to end on the tiny model: leaderboard files, cache hits and misses."""

import json

from typer.testing import CliRunner

from openrecipe.cli.main import app


def test_eval_writes_leaderboard_and_caches(tmp_path, tiny_model_dir, tiny_model_dir_b, monkeypatch):
    monkeypatch.setenv("OPENRECIPE_HOME", str(tmp_path / "home"))
    tests = tmp_path / "qa.jsonl"
    tests.write_text(
        "".join(
            json.dumps({"prompt": f"q{i}", "reference": "zzz", "domain": "qa", "max_new_tokens": 3}) + "\n"
            for i in range(4)
        )
    )
    (tmp_path / "text.txt").write_text("some held out text\n\nmore text here\n")
    args = [
        "eval",
        f"a={tiny_model_dir}",
        f"b={tiny_model_dir_b}",
        "--tests",
        str(tests),
        "--tests",
        str(tmp_path / "text.txt"),
        "--out",
        str(tmp_path / "out"),
        "--name",
        "Nova",
        "--organization",
        "Acme",
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    board = json.loads((tmp_path / "out" / "leaderboard.json").read_text())
    assert [row["variant"] for row in board["rows"]] == ["a", "b"]
    assert {"qa", "identity", "text ppl"} <= set(board["domains"])
    assert board["rows"][0]["cells"]["qa"]["n"] == 4
    assert not any(row["cache_hit"] for row in board["rows"])
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0
    assert all(row["cache_hit"] for row in json.loads((tmp_path / "out" / "leaderboard.json").read_text())["rows"])
    tests.write_text(tests.read_text() + json.dumps({"prompt": "new", "reference": "x", "domain": "qa"}) + "\n")
    third = CliRunner().invoke(app, args)
    assert third.exit_code == 0
    assert not any(r["cache_hit"] for r in json.loads((tmp_path / "out" / "leaderboard.json").read_text())["rows"])


def test_eval_with_retrieval_paired_verdicts_and_contamination(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("OPENRECIPE_HOME", str(tmp_path / "home"))
    faq = tmp_path / "faq.csv"
    faq.write_text("question,answer\nIs shipping free?,Shipping is free on orders over $50.\n")
    tests = tmp_path / "support.jsonl"
    rows = [{"prompt": "Is shipping free?", "reference": "$50", "domain": "support", "id": "copy"}]
    rows += [
        {"prompt": f"Tell me about delivery fees, case {i}", "reference": "$50", "domain": "support"} for i in range(3)
    ]
    tests.write_text("".join(json.dumps({**row, "max_new_tokens": 3}) + "\n" for row in rows))
    args = ["eval", f"a={tiny_model_dir}", "--tests", str(tests), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, [*args, "--retrieve", str(faq), "--train-data", str(faq), "--top-k", "1"])
    assert result.exit_code == 0, result.output
    board = json.loads((tmp_path / "out" / "leaderboard.json").read_text())
    assert [row["variant"] for row in board["rows"]] == ["a", "a+retrieval"]
    assert board["baseline"] == "a" and board["rows"][0]["cells"]["support"]["interval"] == "wilson"
    [verdict] = board["verdicts"]
    assert verdict["domain"] == "support" and verdict["n"] == 4
    assert [r["variant"] for r in board["versus_baseline"]] == ["a+retrieval"]
    assert [r["id"] for r in board["contamination"]["flagged_items"]] == ["copy"]
    markdown = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "## Verdict per domain" in markdown and "## Contamination check" in markdown
    bad = CliRunner().invoke(app, [*args, "--baseline", "nope"])
    assert bad.exit_code == 2 and "baseline 'nope'" in bad.output
