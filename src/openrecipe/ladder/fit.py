"""Scaling-law fits: L(N, D) = E + A/N^alpha + B/D^beta fitted directly (Huber loss on log residuals,
many starting points, as in Chinchilla's third approach) with bootstrap intervals; optimal learning rate
and batch size as power laws of compute (DeepSeek's form eta = a C^b, B = c C^d); Kendall tau between rungs.
scipy does the optimizing; what is written here is only the model and the resampling."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

HUBER_DELTA = 1e-3


@dataclass
class LossLaw:
    E: float
    A: float
    alpha: float
    B: float
    beta: float

    def predict(self, params: float | np.ndarray, tokens: float | np.ndarray) -> Any:
        return self.E + self.A / np.power(params, self.alpha) + self.B / np.power(tokens, self.beta)

    def as_dict(self) -> dict[str, float]:
        return {"E": self.E, "A": self.A, "alpha": self.alpha, "B": self.B, "beta": self.beta}


def _objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray) -> tuple[float, np.ndarray]:
    """Huber loss of log residuals and its exact gradient (L-BFGS-B needs far fewer evaluations with it)."""
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    top = terms.max(axis=0)
    weights = np.exp(terms - top)
    total = weights.sum(axis=0)
    residual = top + np.log(total) - log_l
    weights /= total
    small = np.abs(residual) <= HUBER_DELTA
    value = np.where(small, 0.5 * residual**2, HUBER_DELTA * (np.abs(residual) - 0.5 * HUBER_DELTA)).sum()
    slope = np.clip(residual, -HUBER_DELTA, HUBER_DELTA)
    gradient = np.array(
        [
            np.sum(slope * weights[0]),
            np.sum(slope * weights[1]),
            np.sum(slope * weights[2]),
            -np.sum(slope * weights[0] * log_n),
            -np.sum(slope * weights[1] * log_d),
        ]
    )
    return float(value), gradient


def _starts(losses: np.ndarray) -> list[np.ndarray]:
    """A grid of starting points (Besiroglu et al. 2024 use one too: the Huber objective has local minima)."""
    floor = math.log(max(1e-3, float(losses.min()) * 0.5))
    return [
        np.array([a, b, e, alpha, beta])
        for a, b, e, alpha, beta in itertools.product((0.0, 8.0), (0.0, 8.0), (floor,), (0.3, 0.7), (0.3, 0.7))
    ]


def fit_loss_law(
    params: np.ndarray, tokens: np.ndarray, losses: np.ndarray, starts: list[np.ndarray] | None = None
) -> tuple[LossLaw, np.ndarray]:
    """The best of many L-BFGS-B runs; returns the law and the raw parameter vector (a, b, e, alpha, beta)."""
    from scipy.optimize import minimize

    log_n, log_d, log_l = np.log(params), np.log(tokens), np.log(losses)
    best = None
    bounds = [(-10, 40), (-10, 40), (-10, 5), (0.0, 3.0), (0.0, 3.0)]
    for start in starts or _starts(losses):
        result = minimize(_objective, start, args=(log_n, log_d, log_l), method="L-BFGS-B", jac=True, bounds=bounds)
        if best is None or result.fun < best.fun:
            best = result
    a, b, e, alpha, beta = best.x
    return LossLaw(math.exp(e), math.exp(a), float(alpha), math.exp(b), float(beta)), best.x


def bootstrap_loss_law(
    params: np.ndarray, tokens: np.ndarray, losses: np.ndarray, *, resamples: int, seed: int, at: tuple[float, float]
) -> dict[str, Any]:
    """Refit on points drawn with replacement; 2.5/97.5 percentiles of each coefficient and of L(at)."""
    law, theta = fit_loss_law(params, tokens, losses)
    rng = np.random.default_rng(seed)
    starts = [theta, _starts(losses)[-1]]  # the full fit's optimum, and one far start as a guard
    samples: dict[str, list[float]] = {key: [] for key in (*law.as_dict(), "prediction")}
    for _ in range(resamples):
        index = rng.integers(0, len(losses), size=len(losses))
        refit, _ = fit_loss_law(params[index], tokens[index], losses[index], starts)
        for key, value in refit.as_dict().items():
            samples[key].append(value)
        samples["prediction"].append(float(refit.predict(at[0], at[1])))
    intervals = {key: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for key, v in samples.items()}
    residuals = np.log(losses) - np.log(law.predict(params, tokens))
    return {
        "law": law.as_dict(),
        "theta": [float(v) for v in theta],
        "intervals": intervals,
        "prediction": float(law.predict(at[0], at[1])),
        "prediction_interval": intervals["prediction"],
        "residuals": residuals.tolist(),
        "rms_relative_error": float(np.sqrt(np.mean(np.expm1(residuals) ** 2))),
        "resamples": resamples,
    }


def leave_one_out(params: np.ndarray, tokens: np.ndarray, losses: np.ndarray, theta: np.ndarray) -> dict[str, Any]:
    """Each fitted point predicted by the law refitted without it (relative errors): how well the law
    describes the rungs it was fitted on, before it is trusted on a rung it has not seen."""
    errors = []
    for index in range(len(losses)):
        keep = np.arange(len(losses)) != index
        law, _ = fit_loss_law(params[keep], tokens[keep], losses[keep], [theta])
        errors.append(float(law.predict(params[index], tokens[index]) / losses[index] - 1))
    return {"errors": errors, **_summary(errors)}


def largest_held_out(params: np.ndarray, tokens: np.ndarray, losses: np.ndarray) -> dict[str, Any]:
    """The largest size's points predicted from a fit on the smaller sizes only: a rehearsal of the
    extrapolation the ladder is about to make, on rungs that are already trained."""
    largest = params == params.max()
    if largest.all() or len(set(params[~largest])) < 2:
        return {"errors": [], **_summary([])}
    law, _ = fit_loss_law(params[~largest], tokens[~largest], losses[~largest])
    errors = (law.predict(params[largest], tokens[largest]) / losses[largest] - 1).tolist()
    return {"errors": errors, "tokens": tokens[largest].tolist(), "law": law.as_dict(), **_summary(errors)}


def data_curvature(params: np.ndarray, tokens: np.ndarray, losses: np.ndarray) -> dict[str, Any]:
    """Loss drop per e-fold of tokens between successive budgets, per size. The law's B/D^beta makes each
    drop smaller than the last; rungs still early in training make it larger ("accelerating"), a shape no
    coefficients can follow, and then the law under-predicts what more data does. Seen on the fitted rungs,
    so it is known before the check is run."""
    sizes = []
    for n in sorted(set(params.tolist())):
        at = params == n
        order = np.argsort(tokens[at])
        sizes.append({"params": n, **drops_per_efold(tokens[at][order], losses[at][order])})
    return {"sizes": sizes, "accelerating": sum(s["accelerating"] for s in sizes)}


def drops_per_efold(data: np.ndarray, losses: np.ndarray) -> dict[str, Any]:
    """Loss drop per e-fold of data between successive points (data increasing), and whether any drop is
    larger than the one before it: a shape E + B/D^beta, whose drops shrink with data, cannot follow."""
    drops = [float((losses[i] - losses[i + 1]) / math.log(data[i + 1] / data[i])) for i in range(len(data) - 1)]
    accelerating = any(later > earlier for earlier, later in itertools.pairwise(drops))
    return {"drops_per_efold": drops, "accelerating": accelerating}


def _summary(errors: list[float]) -> dict[str, float | None]:
    if not errors:
        return {"rms": None, "max_abs": None}
    values = np.asarray(errors)
    return {"rms": float(np.sqrt(np.mean(values**2))), "max_abs": float(np.abs(values).max())}


def fit_power_law(compute: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """value = a * C^b, least squares in log-log space (scipy's linregress)."""
    from scipy.stats import linregress

    if len(set(np.round(np.log(values), 9))) == 1:  # every rung chose the same value: a flat law
        return {"a": float(values[0]), "b": 0.0, "r2": 1.0}
    fit = linregress(np.log(compute), np.log(values))
    return {"a": float(math.exp(fit.intercept)), "b": float(fit.slope), "r2": float(fit.rvalue**2)}


def power_law_at(law: dict[str, float], compute: float) -> float:
    return law["a"] * compute ** law["b"]


def kendall_tau(first: list[float], second: list[float]) -> float | None:
    from scipy.stats import kendalltau

    if len(first) < 2:
        return None
    tau = kendalltau(first, second).statistic
    return None if tau is None or math.isnan(tau) else float(tau)


def distinguishable_tau(first: list[float], second: list[float], band: float) -> dict[str, Any]:
    """Kendall tau over the pairs whose difference exceeds the seed-noise band at both rungs; the other
    pairs are ties under noise and are counted, not ranked."""
    agree = disagree = ties = 0
    for i, j in itertools.combinations(range(len(first)), 2):
        d1, d2 = first[i] - first[j], second[i] - second[j]
        if abs(d1) <= band or abs(d2) <= band:
            ties += 1
        elif d1 * d2 > 0:
            agree += 1
        else:
            disagree += 1
    ranked = agree + disagree
    return {"tau": (agree - disagree) / ranked if ranked else None, "ranked_pairs": ranked, "tied_pairs": ties}
