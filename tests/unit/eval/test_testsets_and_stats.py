import json

import pytest

from openrecipe.data.validation import DataError
from openrecipe.eval.compare import compare_to_baseline
from openrecipe.eval.leaderboard import build_leaderboard, to_markdown
from openrecipe.eval.stats import bootstrap_interval
from openrecipe.eval.testsets import load_test_set


def test_jsonl_csv_yaml_and_txt(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"prompt": "q", "reference": "r", "domain": "x"}) + "\n")
    (tmp_path / "b.csv").write_text("prompt,references,metric,choices\nPick,b,choice,a|b|c\n")
    (tmp_path / "c.yaml").write_text("items:\n  - {prompt: q, references: [1], metric: numeric}\n")
    (tmp_path / "d.txt").write_text("one text\n\ntwo text\n")
    assert load_test_set(tmp_path / "a.jsonl")[0].domain == "x"
    choice = load_test_set(tmp_path / "b.csv")[0]
    assert choice.choices == ["a", "b", "c"] and choice.references == ["b"] and choice.domain == "b"
    assert load_test_set(tmp_path / "c.yaml")[0].metric == "numeric"
    texts = load_test_set(tmp_path / "d.txt")
    assert [t.metric for t in texts] == ["perplexity", "perplexity"]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"prompt": "q", "reference": "r", "metric": "contain"}, "did you mean 'contains'"),
        ({"prompt": "q"}, "needs at least one reference"),
        ({"reference": "r"}, "needs a non-empty `prompt`"),
        ({"prompt": "q", "reference": "r", "bogus": 1}, "extra field 'bogus'"),
        (
            {"prompt": "q", "metric": "choice", "choices": ["a", "b"], "answer": "c"},
            "must be one of the choices",
        ),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, row, reason):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"prompt": "ok", "reference": "r"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError) as info:
        load_test_set(path)
    assert info.value.where == f"{path}:2" and reason in info.value.format()


def test_bootstrap_interval_contains_mean_and_is_deterministic():
    scores = [1.0] * 7 + [0.0] * 3
    mean, low, high = bootstrap_interval(scores, seed=1)
    assert mean == pytest.approx(0.7) and low < mean < high
    assert bootstrap_interval(scores, seed=1) == (mean, low, high)
    assert bootstrap_interval([1.0] * 5) == (1.0, 1.0, 1.0)


def test_leaderboard_and_baseline_comparison():
    outcomes = [
        {
            "variant": "base",
            "model": "m",
            "results": [{"id": "1", "domain": "a", "score": 0.0}, {"id": "2", "domain": "a", "score": 1.0}],
            "perplexity": {"gen": {"perplexity": 12.0, "tokens": 100}},
        },
        {
            "variant": "sft",
            "model": "n",
            "results": [{"id": "1", "domain": "a", "score": 1.0}, {"id": "2", "domain": "a", "score": 1.0}],
            "perplexity": {},
        },
    ]
    board = build_leaderboard(outcomes)
    assert board["domains"] == ["a", "gen ppl"]
    assert board["rows"][0]["cells"]["a"]["n"] == 2
    assert "| base | 50 [" in to_markdown(board) and "12.00" in to_markdown(board)
    [row] = compare_to_baseline(outcomes, "base")
    assert row["variant"] == "sft" and row["domain"] == "a" and row["delta_points"] == pytest.approx(50)
    assert row["only_variant"] == 1 and row["only_baseline"] == 0 and row["p_value"] == pytest.approx(1.0)
    assert not row["significant"]
