"""Recipes: one YAML file describes the whole path; the runner executes its stages in order."""

from openrecipe.recipe.runner import run_recipe
from openrecipe.recipe.schema import load_recipe, recipe_model

__all__ = ["load_recipe", "recipe_model", "run_recipe"]
