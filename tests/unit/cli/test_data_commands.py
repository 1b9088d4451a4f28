"""`openrecipe data clean` options for the data people bring: delimiter, unknown fields, dataset_info entries."""

import json

from typer.testing import CliRunner

from openrecipe.cli.main import app


def test_clean_semicolon_csv_reports_ignored_columns(tmp_path):
    path = tmp_path / "faq.csv"
    path.write_text("id;question;answer\n1;How?;Like this\n")
    result = CliRunner().invoke(app, ["data", "clean", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "ignored fields no reader uses: id (1)" in result.output
    result = CliRunner().invoke(
        app, ["data", "clean", str(path), "--out", str(tmp_path / "out"), "--unknown-fields", "error"]
    )
    assert result.exit_code == 2 and "extra field 'id'" in result.output
    result = CliRunner().invoke(app, ["data", "clean", str(path), "--out", str(tmp_path / "o"), "--delimiter", ","])
    assert result.exit_code == 2 and "delimiter" in result.output


def test_clean_a_dataset_info_entry(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"instruction": "q", "input": "", "output": "a", "text": "x"}]))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"mine": {"file_name": "a.json"}}))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["data", "clean", str(tmp_path / "dataset_info.json"), "--dataset", "mine", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    row = json.loads((out / "data.jsonl").read_text())
    assert row["messages"][-1] == {"role": "assistant", "content": "a"} and row["source"] == "mine"
