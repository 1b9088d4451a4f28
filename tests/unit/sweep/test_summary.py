"""Seed noise decides what counts as a difference between settings."""

import math

import pytest

from openrecipe.sweep.summary import markdown, noise_band, pooled_seed_std, summarize_settings


def test_pooled_std_weights_settings_by_their_degrees_of_freedom():
    assert pooled_seed_std([[1.0], [2.0]]) is None
    assert pooled_seed_std([[1.0, 3.0], [5.0, 5.0, 5.0]]) == pytest.approx(math.sqrt(2.0 / 3.0))


def test_differences_inside_the_noise_band_are_not_distinguishable():
    rows = [
        ({"lr": 1e-3}, [1.00, 1.02]),
        ({"lr": 2e-3}, [1.01, 1.03]),  # 0.01 worse: well inside two standard errors of a 0.014 std
        ({"lr": 1e-2}, [1.50, 1.52]),
    ]
    result = summarize_settings(rows, "minimize")
    verdicts = [(e["params"]["lr"], e["verdict"]) for e in result["settings"]]
    assert verdicts == [
        (1e-3, "best"),
        (2e-3, "not distinguishable from the best"),
        (1e-2, "worse than the best"),
    ]
    assert result["seed_std"] == pytest.approx(math.sqrt(0.0002))
    assert result["settings"][1]["noise_band"] == pytest.approx(noise_band(result["seed_std"], 2, 2))
    assert "not distinguishable" in markdown({**result, "study": "s", "direction": "minimize", "trials": {}}, "loss")


def test_repeated_settings_are_grouped_and_maximize_ranks_high_first():
    rows = [({"r": 4}, [0.5]), ({"r": 8}, [0.7]), ({"r": 4}, [0.6])]
    result = summarize_settings(rows, "maximize")
    assert [e["params"]["r"] for e in result["settings"]] == [8, 4]
    assert result["settings"][1]["runs"] == 2
    assert result["settings"][0]["verdict"] == "best"


def test_without_seeds_noise_is_reported_as_unmeasured():
    result = summarize_settings([({"a": 1}, [1.0]), ({"a": 2}, [2.0])], "minimize")
    assert result["seed_std"] is None
    assert "not measured" in result["settings"][1]["verdict"]
