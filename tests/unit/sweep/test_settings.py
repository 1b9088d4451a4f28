"""A recipe's `sweep:` block is validated with the recipe; command-line values win over it."""

import pytest

from openrecipe.errors import OpenRecipeError
from openrecipe.recipe import load_recipe
from openrecipe.sweep.config import SweepSettings
from openrecipe.sweep.run import merge_settings

RECIPE = """name: r
sweep:
  stage: data
  space: {clean.min_chars: [1, 50], clean.max_chars: "int(100,400)"}
  trials: 6
  seeds: 2
stages:
  - id: data
    kind: clean
    sources: [{path: qa.jsonl}]
"""


def test_recipe_block_and_cli_merge(tmp_path):
    (tmp_path / "qa.jsonl").write_text('{"messages": [{"role": "user", "content": "a"}]}\n')
    (tmp_path / "r.yaml").write_text(RECIPE)
    recipe = load_recipe(tmp_path / "r.yaml")
    merged = merge_settings(recipe.sweep, {"trials": 10, "space": [], "seeds": None})
    assert (merged.trials, merged.seeds, merged.stage) == (10, 2, "data")
    assert merged.space == {"clean.min_chars": [1, 50], "clean.max_chars": "int(100,400)"}
    replaced = merge_settings(recipe.sweep, {"space": ["clean.min_chars=[5]"]})
    assert replaced.space == {"stages.data.clean.min_chars": [5]}


def test_unreadable_space_in_the_recipe_names_the_field(tmp_path):
    (tmp_path / "r.yaml").write_text(RECIPE.replace('"int(100,400)"', '"normal(1,2)"'))
    with pytest.raises(OpenRecipeError, match="sweep.space"):
        load_recipe(tmp_path / "r.yaml")


def test_nothing_to_search_is_a_user_error():
    with pytest.raises(OpenRecipeError, match="nothing to search"):
        merge_settings(SweepSettings(), {"space": []})


def test_a_bad_option_value_is_a_user_error():
    with pytest.raises(OpenRecipeError, match="sampler"):
        merge_settings(None, {"space": ["seed=[1,2]"], "sampler": "bayes"})
