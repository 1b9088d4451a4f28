"""The loss law is fitted directly and recovers known coefficients; bootstrap intervals cover them."""

import numpy as np
import pytest

from openrecipe.ladder.fit import (
    LossLaw,
    bootstrap_loss_law,
    data_curvature,
    distinguishable_tau,
    fit_loss_law,
    fit_power_law,
    kendall_tau,
    largest_held_out,
    leave_one_out,
    power_law_at,
)


def _points(noise: float, seed: int = 0):
    truth = LossLaw(E=1.2, A=40.0, alpha=0.4, B=300.0, beta=0.5)
    n = np.repeat([3e3, 1e4, 3e4, 1e5, 3e5], 3)
    d = np.tile([1e4, 3e4, 1e5], 5)
    rng = np.random.default_rng(seed)
    losses = truth.predict(n, d) * np.exp(rng.normal(0, noise, size=n.size))
    return truth, n, d, losses


def test_noise_free_points_give_back_the_law():
    truth, n, d, losses = _points(0.0)
    law, _ = fit_loss_law(n, d, losses)
    assert law.predict(1e6, 1e6) == pytest.approx(truth.predict(1e6, 1e6), rel=5e-3)
    assert law.alpha == pytest.approx(truth.alpha, abs=0.05) and law.beta == pytest.approx(truth.beta, abs=0.05)


def test_bootstrap_is_seeded_and_its_interval_covers_the_truth():
    truth, n, d, losses = _points(0.01)
    first = bootstrap_loss_law(n, d, losses, resamples=10, seed=3, at=(1e6, 3e5))
    second = bootstrap_loss_law(n, d, losses, resamples=10, seed=3, at=(1e6, 3e5))
    assert first == second  # the same seed gives the same coefficients and intervals
    low, high = first["prediction_interval"]
    assert low <= truth.predict(1e6, 3e5) * 1.02 and high >= truth.predict(1e6, 3e5) * 0.98
    assert len(first["residuals"]) == n.size


def test_power_law_of_compute():
    compute = np.array([1e9, 1e10, 1e11])
    law = fit_power_law(compute, 0.3 * compute**-0.25)
    assert law["b"] == pytest.approx(-0.25) and power_law_at(law, 1e12) == pytest.approx(0.3 * 1e12**-0.25)
    assert fit_power_law(compute, np.array([16.0, 16.0, 16.0]))["b"] == 0.0


def test_rank_agreement_and_noise_ties():
    assert kendall_tau([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    result = distinguishable_tau([1.0, 1.01, 2.0], [1.02, 1.0, 2.5], band=0.05)
    assert result == {"tau": 1.0, "ranked_pairs": 2, "tied_pairs": 1}


def test_leave_one_out_and_the_largest_size_held_out():
    _, n, d, losses = _points(0.003)
    _, theta = fit_loss_law(n, d, losses)
    close = leave_one_out(n, d, losses, theta)
    assert len(close["errors"]) == n.size and close["max_abs"] < 0.02
    rehearsal = largest_held_out(n, d, losses)
    assert len(rehearsal["errors"]) == 3 and rehearsal["max_abs"] < 0.03
    # A largest size whose losses do not follow the law shows up in the rehearsal.
    bent = losses.copy()
    bent[n == n.max()] *= 1.2
    assert largest_held_out(n, d, bent)["max_abs"] > 0.1


def test_data_curvature_flags_drops_that_grow_with_data():
    _, n, d, losses = _points(0.0)
    follows = data_curvature(n, d, losses)
    assert follows["accelerating"] == 0 and len(follows["sizes"]) == 5
    assert all(a > b > 0 for a, b in (s["drops_per_efold"] for s in follows["sizes"]))
    # Early in training each multiple of data lowers the loss more than the last: no law with a floor bends so.
    early = losses.copy()
    early[(n == n.max()) & (d == d.max())] *= 0.6
    flagged = data_curvature(n, d, early)
    assert flagged["accelerating"] == 1 and flagged["sizes"][-1]["accelerating"]
