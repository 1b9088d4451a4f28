"""`openrecipe ladder` and `openrecipe sweep` refuse what they cannot run with one line and exit 2."""

from typer.testing import CliRunner

from openrecipe.cli.main import app

runner = CliRunner()


def test_ladder_without_a_ladder_block_is_a_user_error(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\nstages:\n  - id: data\n    kind: clean\n    sources: [{path: x.jsonl}]\n")
    (tmp_path / "x.jsonl").write_text('{"text": "a"}\n')
    result = runner.invoke(app, ["ladder", str(recipe), "--out", str(tmp_path / "l")])
    assert result.exit_code == 2
    assert "no `ladder:` block" in result.output


def test_sweep_needs_a_recipe_or_a_study_to_join():
    result = runner.invoke(app, ["sweep"])
    assert result.exit_code == 2
    assert "--join" in result.output
