"""The ladder's rate law: every swept (size, budget) cell contributes the vertex of its log-rate parabola,
so the law sees data as well as model size and is not stuck to the grid's steps."""

import math

import pytest
from pydantic import ValidationError

from openrecipe.ladder.config import PretrainLadderSettings
from openrecipe.ladder.run import _budget_phase, _rate_laws

SIZES = [{"width": w, "depth": 1} for w in (8, 16, 24, 32, 40)]
RATES = [2.5e-3, 5e-3, 1e-2, 2e-2, 4e-2]


def _settings(**extra) -> PretrainLadderSettings:
    return PretrainLadderSettings(
        sizes=SIZES,
        budgets=[1000, 4000, 16000],
        learning_rates=RATES,
        batch_sizes=[8],
        family={"head_dim": 8},
        predict={"width": 64, "depth": 2, "tokens": 64000},
        **extra,
    )


def _sweep(settings: PretrainLadderSettings, best_rate_of) -> list[dict]:
    """Runs whose loss is a parabola in log(rate) around best_rate_of(flops)."""
    runs = []
    for index, size in enumerate(settings.sizes):
        budgets = settings.budgets if index < settings.grid_every_budget else settings.budgets[:1]
        for tokens in budgets:
            flops = 1e3 * size.width * tokens
            for lr in settings.learning_rates:
                loss = 2.0 + (math.log(lr) - math.log(best_rate_of(flops))) ** 2
                runs.append(
                    {"width": size.width, "depth": size.depth, "tokens": tokens, "learning_rate": lr,
                     "batch_size": 8, "seed": 0, "flops": flops, "eval_loss": loss}
                )  # fmt: skip
    return runs


def test_rate_law_recovers_a_power_law_of_compute_from_every_swept_cell():
    settings = _settings(grid_every_budget=2)
    truth = {"a": 0.4, "b": -0.2}  # 0.017 down to 0.007 over the cells: inside the grid
    laws = _rate_laws(settings, _sweep(settings, lambda c: truth["a"] * c ** truth["b"]))
    law = laws["learning_rate"]
    assert len(law["cells"]) == 5 + 2 * 2  # every size at the first budget, two sizes at the other two
    assert law["a"] == pytest.approx(truth["a"], rel=1e-6)
    assert law["b"] == pytest.approx(truth["b"], abs=1e-9)
    assert not any(cell["at_grid_edge"] for cell in law["cells"])
    assert {cell["learning_rate"] for cell in law["cells"]} - set(RATES)  # vertices, not grid values


def test_swept_cells_are_points_and_the_rest_would_be_trained_at_the_law(monkeypatch):
    settings = _settings(grid_every_budget=5)
    sweep = _sweep(settings, lambda c: 0.01)
    laws = _rate_laws(settings, sweep)
    trained = []
    monkeypatch.setattr("openrecipe.ladder.run._train", lambda spec, *a: trained.append(spec))
    points = _budget_phase(settings, None, None, 0, sweep, laws)
    assert trained == []  # every cell had its grid: no run is added
    assert len(points) == 15 and {p["learning_rate"] for p in points} == {1e-2}


def test_grid_every_budget_beyond_the_sizes_is_refused():
    with pytest.raises(ValidationError, match="grid_every_budget is 6 but the ladder has 5 sizes"):
        _settings(grid_every_budget=6)
