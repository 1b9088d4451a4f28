"""Recipes: one YAML file describes the whole path; the runner executes its stages in order."""

from openrecipe.recipe.schema import load_recipe, recipe_model
from openrecipe.recipe.runner import run_recipe

__all__ = ["load_recipe", "recipe_model", "run_recipe"]
