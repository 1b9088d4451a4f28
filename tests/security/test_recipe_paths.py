"""Paths in a recipe: publish rewrites only the fields the schema marks as paths, and a run's inputs are
relative to the recipe file, whatever folder it is started from."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from openrecipe.cli.main import app

runner = CliRunner()


def project(folder: Path) -> Path:
    """A recipe beside a `data/` folder, with a stage whose id, description and prompt-like text are `data`."""
    (folder / "data").mkdir(parents=True)
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
        for i in range(8)
    ]
    (folder / "data" / "faq.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "name": "paths",
        "license": "apache-2.0",
        "description": "data",
        "system_prompt": "data",
        "stages": [{"id": "data", "kind": "clean", "description": "data", "sources": [{"path": "data/faq.jsonl"}]}],
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_publish_rewrites_only_input_paths_and_the_bundle_reproduces(tmp_path):
    recipe = project(tmp_path / "project")
    run = tmp_path / "run"
    assert runner.invoke(app, ["run", str(recipe), "--out", str(run)]).exit_code == 0
    bundle = tmp_path / "bundle"
    # With the raw inputs the clean stage stays in the bundle's recipe, reading the copied file.
    result = runner.invoke(app, ["publish", str(run), "--out", str(bundle), "--include-raw", "--yes"])
    assert result.exit_code == 0, result.output
    published = yaml.safe_load((bundle / "recipe.yaml").read_text())
    assert published["stages"][0]["id"] == "data"
    assert published["stages"][0]["description"] == "data"
    assert published["description"] == "data" and published["system_prompt"] == "data"
    assert published["stages"][0]["sources"][0]["path"] == "data/faq.jsonl"
    assert sorted(p.name for p in (bundle / "data").iterdir()) == ["cleaned-data.jsonl", "faq.jsonl"]
    # The manifest keeps the original recipe: publishing rewrites a copy.
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["recipe"]["stages"][0]["sources"][0]["path"] == "data/faq.jsonl"
    checked = runner.invoke(app, ["reproduce", str(bundle), "--out", str(tmp_path / "again")])
    assert checked.exit_code == 0, checked.output


def test_inputs_do_not_depend_on_the_working_folder(tmp_path, monkeypatch):
    recipe = project(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "data").mkdir(parents=True)
    (elsewhere / "data" / "unrelated.txt").write_text("not an input\n")
    monkeypatch.chdir(elsewhere)
    run = tmp_path / "run"
    assert runner.invoke(app, ["run", str(recipe), "--out", str(run)]).exit_code == 0
    inputs = json.loads((run / "manifest.json").read_text())["inputs"]
    assert list(inputs) == [str(recipe.parent / "data" / "faq.jsonl")]
    # Editing the unrelated folder changes nothing: the stage is reused.
    (elsewhere / "data" / "unrelated.txt").write_text("edited\n")
    assert runner.invoke(app, ["run", str(recipe), "--out", str(run)]).exit_code == 0
    report = json.loads((run / "report.json").read_text())
    assert [s["status"] for s in report["stages"]] == ["cached"]


def test_a_relative_path_missing_beside_the_recipe_is_not_found_in_the_working_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    recipe = folder / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump({"name": "p", "stages": [{"id": "c", "kind": "clean", "sources": [{"path": "faq.jsonl"}]}]})
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "faq.jsonl").write_text('{"messages": [{"role": "user", "content": "q"}]}\n')
    monkeypatch.chdir(elsewhere)
    result = runner.invoke(app, ["run", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert f"not found: {folder / 'faq.jsonl'}" in "".join(result.output.split("\n"))
