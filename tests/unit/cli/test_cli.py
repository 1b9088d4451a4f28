import json

from typer.testing import CliRunner

from openrecipe.cli.main import app

runner = CliRunner()


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("chat", "generate", "validate", "schema", "run"):
        assert command in result.output


def test_user_error_is_one_line_exit_2(tmp_path):
    result = runner.invoke(app, ["chat", str(tmp_path / "nope"), "-p", "hi"])
    assert result.exit_code == 2
    assert "model path not found" in result.output
    assert "Traceback" not in result.output


def test_validate_reports_and_exits_2(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("name: x\nstages:\n  - {id: a, kind: generat}\n")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "did you mean 'generate'" in result.output
    good = tmp_path / "g.yaml"
    good.write_text("name: x\nstages:\n  - {id: a, kind: generate, prompts: [hi]}\n")
    result = runner.invoke(app, ["validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "is valid" in result.output


def test_schema_prints_json():
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.output)["title"] == "Recipe"


def test_chat_one_prompt(tiny_model_dir):
    result = runner.invoke(app, ["chat", str(tiny_model_dir), "-p", "hello", "--max-new-tokens", "3"])
    assert result.exit_code == 0, result.output


def test_interactive_chat_reset_and_exit(tiny_model_dir):
    result = runner.invoke(
        app, ["chat", str(tiny_model_dir), "--max-new-tokens", "2"], input="hello\n/reset\nagain\n/exit\n"
    )
    assert result.exit_code == 0, result.output
    assert "history cleared" in result.output
    assert result.output.count("model>") == 2


def test_generate_writes_one_row_per_input_in_order(tiny_model_dir, tmp_path):
    source = tmp_path / "in.jsonl"
    rows = [{"prompt": "a"}, {"messages": [{"role": "user", "content": "b"}], "tag": 2}, {"prompt": "ccc"}]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    result = runner.invoke(
        app,
        [
            "generate",
            str(tiny_model_dir),
            "-i",
            str(source),
            "-o",
            str(out),
            "--batch-size",
            "2",
            "--max-new-tokens",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w.get("prompt") for w in written] == ["a", None, "ccc"]
    assert written[1]["tag"] == 2 and all("reply" in w for w in written)


def test_generate_bad_input_line_is_named(tiny_model_dir, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"prompt": "a"}\n{oops\n')
    result = runner.invoke(app, ["generate", str(tiny_model_dir), "-i", str(source), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert f"{source}:2: invalid JSON" in result.output


def test_an_option_out_of_its_range_is_a_usage_error_exit_2(tmp_path):
    result = runner.invoke(app, ["eval", "default", "--out", str(tmp_path), "--batch-size", "0"])
    assert result.exit_code == 2
    assert "--batch-size" in result.output and "greater than or equal to 1" in result.output
    assert "internal error" not in result.output


def test_internal_error_exit_1(monkeypatch):
    from openrecipe.recipe import schema

    monkeypatch.setattr(schema, "recipe_json_schema", lambda: 1 / 0)
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 1
    assert "internal error: ZeroDivisionError" in result.output
