import json

import yaml

from openrecipe.recipe.runner import run_recipe
from openrecipe.recipe.schema import load_recipe


def test_run_writes_stage_folders_resolved_recipe_and_report(tmp_path, tiny_model_dir):
    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text(
        f"""name: tiny
base_model: {tiny_model_dir}
system_prompt: Be brief.
stages:
  - {{id: first, kind: generate, prompts: [hello, world], max_new_tokens: 4}}
  - {{id: second, kind: generate, prompts: [again], max_new_tokens: 3, model: "stage:first"}}
"""
    )
    recipe = load_recipe(recipe_path, ["stages.second.model=base"])
    report = run_recipe(recipe, tmp_path / "run")
    run = tmp_path / "run"
    resolved = yaml.safe_load((run / "recipe.resolved.yaml").read_text())
    assert resolved["stages"][1]["model"] == "base"
    on_disk = json.loads((run / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert [s["id"] for s in on_disk["stages"]] == ["first", "second"]
    first = on_disk["stages"][0]
    assert first["status"] == "ok" and first["kind"] == "generate" and first["seconds"] >= 0
    assert first["metrics"]["rows"] == 2
    assert first["artifacts"]["generations"] == "first/generations.jsonl"
    rows = [json.loads(line) for line in (run / "first" / "generations.jsonl").read_text().splitlines()]
    assert rows[0]["messages"][0] == {"role": "system", "content": "Be brief."}


def test_failed_stage_is_recorded(tmp_path, tiny_model_dir):
    import pytest

    from openrecipe.errors import OpenRecipeError

    recipe_path = tmp_path / "r.yaml"
    recipe_path.write_text(
        f"name: tiny\nbase_model: {tiny_model_dir}\nstages:\n"
        f"  - {{id: bad, kind: generate, input: {tmp_path / 'missing.jsonl'}}}\n"
    )
    with pytest.raises(OpenRecipeError):
        run_recipe(load_recipe(recipe_path), tmp_path / "run")
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["status"] == "failed"
    assert report["stages"][0]["status"] == "failed"
    assert "prompt file not found" in report["stages"][0]["error"]
