"""Turn LLaMA-Factory and axolotl training configs into openrecipe recipes, naming what has no equivalent."""
