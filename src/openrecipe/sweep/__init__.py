"""Sweeps: Optuna studies over any recipe setting, with seed noise measured and workers that may die."""
