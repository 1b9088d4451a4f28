from pathlib import Path

import pytest

from openrecipe.errors import MultipleErrors, OpenRecipeError
from openrecipe.recipe.schema import load_recipe, recipe_json_schema

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_is_valid(path):
    recipe = load_recipe(path)
    assert recipe.stages or recipe.ladder is not None  # a ladder recipe describes its runs in `ladder:`


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_all_problems_reported_at_once_with_lines_and_suggestions(tmp_path):
    path = write(
        tmp_path,
        """name: demo
sed: 3
identity: {name: Nova}
stages:
  - id: smoke
    kind: generate
    prompts: [hi]
    max_new_tokns: 5
  - id: other
    kind: generat
""",
    )
    with pytest.raises(MultipleErrors) as info:
        load_recipe(path)
    text = info.value.format()
    assert "4 problems" in text
    assert f"{path}:2: unknown key 'sed'" in text and "did you mean 'seed'" in text
    assert "identity.organization: required field is missing" in text
    assert f"{path}:8: unknown key 'stages[smoke].max_new_tokns'" in text
    assert "did you mean 'max_new_tokens'" in text
    assert "unknown kind 'generat'" in text and "did you mean 'generate'" in text


def test_wrong_type_names_the_field(tmp_path):
    path = write(tmp_path, "name: demo\nseed: many\nstages: []\n")
    with pytest.raises(MultipleErrors, match=r"r.yaml:2: seed: .*integer.*\(got 'many'\)"):
        load_recipe(path)


def test_duplicate_ids_and_forward_references(tmp_path):
    path = write(
        tmp_path,
        """name: demo
stages:
  - {id: a, kind: generate, prompts: [x], model: "stage:b"}
  - {id: b, kind: generate, prompts: [x]}
  - {id: b, kind: generate, prompts: [x]}
""",
    )
    with pytest.raises(MultipleErrors) as info:
        load_recipe(path)
    text = info.value.format()
    assert "'stage:b', but that is a later stage" in text
    assert "stage id 'b' is used twice" in text


def test_overrides_are_applied_before_validation(tmp_path):
    path = write(tmp_path, "name: demo\nstages:\n  - {id: s, kind: generate, prompts: [x]}\n")
    recipe = load_recipe(path, ["seed=9", "stages.s.max_new_tokens=7"])
    assert recipe.seed == 9
    assert recipe.stages[0].max_new_tokens == 7
    with pytest.raises(MultipleErrors, match="did you mean 'max_new_tokens'"):
        load_recipe(path, ["stages.s.max_new_token=7"])


def test_not_a_mapping_and_missing_file(tmp_path):
    with pytest.raises(OpenRecipeError, match="must be a YAML mapping"):
        load_recipe(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(OpenRecipeError, match="file not found"):
        load_recipe(tmp_path / "missing.yaml")


def test_schema_lists_stage_kinds():
    schema = recipe_json_schema()
    assert "GenerateStage" in schema["$defs"]
    assert schema["additionalProperties"] is False
