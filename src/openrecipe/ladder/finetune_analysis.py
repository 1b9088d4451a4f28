"""What the fine-tuning ladder's runs say: the best learning rate per rung (grid and log-parabola), the
data-size law L(D) = E + B/D^beta per rank with bootstrap intervals, a check of that law on the largest
fraction from the smaller ones, the transfer tables, and plain-words verdicts on whether the best rate
moves with rank or data and how LoRA's compares with full fine-tuning's."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from openrecipe.ladder.finetune_config import FinetuneLadderSettings
from openrecipe.ladder.fit import distinguishable_tau, drops_per_efold, kendall_tau

MOVES_FACTOR = 2.0  # a best rate that changes by less than this factor "does not move" (the grid steps ~3x)


def best_rate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The grid's best rate, and the vertex of a parabola in log(rate) through it and its neighbours."""
    runs = sorted(runs, key=lambda r: r["learning_rate"])
    losses = [r["eval_loss"] for r in runs]
    index = int(np.argmin(losses))
    best = runs[index]
    out = {"grid": best["learning_rate"], "loss": best["eval_loss"], "edge": index in (0, len(runs) - 1)}
    out["interpolated"] = best["learning_rate"]
    if not out["edge"] and all(math.isfinite(v) for v in losses[index - 1 : index + 2]):
        x = np.log([r["learning_rate"] for r in runs[index - 1 : index + 2]])
        curve = np.polyfit(x, losses[index - 1 : index + 2], 2)
        if curve[0] > 0:
            out["interpolated"] = float(np.exp(np.clip(-curve[1] / (2 * curve[0]), x[0], x[2])))
    return out


def _law_residuals(theta: np.ndarray, log_d: np.ndarray, log_l: np.ndarray) -> np.ndarray:
    log_e, log_b, beta = theta
    return np.logaddexp(log_e, log_b - beta * log_d) - log_l


def fit_data_law(rows: np.ndarray, losses: np.ndarray) -> dict[str, float]:
    """L(D) = E + B / D^beta, least squares on log losses from several starting points (scipy)."""
    from scipy.optimize import least_squares

    log_d, log_l = np.log(rows), np.log(losses)
    best = None
    floor = math.log(max(1e-3, float(losses.min()) * 0.5))
    for log_b, beta in itertools.product((0.0, 3.0, 6.0), (0.2, 0.6, 1.2)):
        fit = least_squares(
            _law_residuals,
            [floor, log_b, beta],
            args=(log_d, log_l),
            bounds=([-10, -10, 0.0], [5, 30, 3.0]),
        )
        if best is None or fit.cost < best.cost:
            best = fit
    log_e, log_b, beta = best.x
    return {"E": math.exp(log_e), "B": math.exp(log_b), "beta": float(beta)}


def law_at(law: dict[str, float], rows: float | np.ndarray) -> Any:
    return law["E"] + law["B"] / np.power(rows, law["beta"])


def bootstrap_data_law(rows: np.ndarray, losses: np.ndarray, *, resamples: int, seed: int) -> dict[str, Any]:
    """The fit, and 2.5/97.5 percentiles of each coefficient over refits on points drawn with replacement
    (draws with fewer than three distinct sizes cannot pin three coefficients and are skipped)."""
    law = fit_data_law(rows, losses)
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {key: [] for key in law}
    for _ in range(resamples if len(rows) > 3 else 0):  # three points pin three coefficients exactly
        index = rng.integers(0, len(rows), size=len(rows))
        if len(set(rows[index].tolist())) < 3:
            continue
        for key, value in fit_data_law(rows[index], losses[index]).items():
            samples[key].append(value)
    intervals = {
        key: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if v else None for key, v in samples.items()
    }
    residuals = np.log(losses) - np.log(law_at(law, rows))
    return {
        "law": law,
        "intervals": intervals,
        "usable_resamples": len(samples["E"]),
        "residuals": residuals.tolist(),
        "rms_relative_error": float(np.sqrt(np.mean(np.expm1(residuals) ** 2))),
    }


def _data_laws(settings: FinetuneLadderSettings, best: dict, seed: int) -> list[dict[str, Any]]:
    laws = []
    for rank in settings.ranks:
        points = [(best[(f, rank)]["train_rows"], best[(f, rank)]["loss"]) for f in settings.fractions]
        points = [(d, loss) for d, loss in points if math.isfinite(loss)]
        if len(points) < 3:
            laws.append({"rank": rank, "points": points, "fit": None})
            continue
        rows, losses = np.array(points, dtype=float).T
        entry = {"rank": rank, "points": points, **drops_per_efold(rows, losses)}
        entry["fit"] = bootstrap_data_law(rows, losses, resamples=settings.bootstrap, seed=seed)
        if len(points) >= 4:  # the largest fraction predicted from the smaller ones, then compared
            law = fit_data_law(rows[:-1], losses[:-1])
            predicted = float(law_at(law, rows[-1]))
            entry["check"] = {
                "rows": float(rows[-1]),
                "predicted": predicted,
                "actual": float(losses[-1]),
                "error_relative": (predicted - losses[-1]) / losses[-1],
            }
        laws.append(entry)
    return laws


def data_law_verdict(laws: list[dict[str, Any]], band: float | None = None) -> dict[str, Any] | None:
    """What the loss-against-data points say about the law itself: a loss that does not fall with more data,
    or falls faster with each larger share, is a shape E + B/D^beta cannot take (the latter makes the law
    predict too high a loss for more data). A larger share's loss above the one before by less than the seed-noise
    `band` is noise, not a rise. None when there is nothing to say (fewer than three shares)."""
    fitted = [entry for entry in laws if entry.get("fit") is not None]
    if not fitted:
        return None
    accelerating = [entry for entry in fitted if entry["accelerating"]]
    checks = [(entry["rank"], entry["check"]["error_relative"]) for entry in fitted if "check" in entry]
    checked = (
        " (the largest share predicted from the smaller ones: "
        + ", ".join(f"{100 * error:+.1f}% at rank {rank}" for rank, error in checks)
        + ")"
        if checks
        else ""
    )
    flat = [entry for entry in fitted if _rises(entry["points"], band or 0.0)]
    if flat:
        text = (
            f"Data law: at {len(flat)} of {len(fitted)} ranks a larger share did not lower the held-out loss (drops "
            f"per e-fold of rows: {_drops_by_rank(flat)}), so L(D), which falls with data, does not describe these "
            f"rungs{checked}. "
            "Differences within the seed noise, or shares whose rows differ in kind, can cause it."
        )
    elif not accelerating:
        text = (
            "Data law: at every rank each larger share lowered the held-out loss less per e-fold of rows than the "
            f"one before, the shape L(D) takes{checked}."
        )
    else:
        text = (
            f"Data law: at {len(accelerating)} of {len(fitted)} ranks a larger share lowered the held-out loss more "
            f"per e-fold of rows than the one before ({_drops_by_rank(accelerating)}). The rungs are still early in "
            "training (every rung "
            "trains the same epochs, so a larger share is also more steps), where L(D), whose drops shrink with "
            f"data, cannot follow: expect it to predict too high a loss for more data{checked}. Rungs trained until "
            "their held-out loss stops falling (more epochs) are the fix."
        )
    return {"accelerating_ranks": [entry["rank"] for entry in accelerating], "checks": dict(checks), "text": text}


def _rises(points: list[tuple[float, float]], band: float) -> bool:
    """Whether a larger share's loss is above the one before by more than `band` (without a band, at all)."""
    losses = [loss for _, loss in points]
    return any(later - earlier > band if band else later >= earlier for earlier, later in itertools.pairwise(losses))


def drops_text(law: dict[str, Any], *, mark_growing: bool = True) -> str:
    """A rank's loss drops per e-fold of rows, share to share, as the report and the bench print them."""
    numbers = ", ".join(f"{drop:.3f}" for drop in law["drops_per_efold"])
    return numbers + (" (growing)" if mark_growing and law["accelerating"] else "")


def _drops_by_rank(laws: list[dict[str, Any]]) -> str:
    return "; ".join(f"rank {law['rank']}: {drops_text(law, mark_growing=False)}" for law in laws)


def transfer(rungs: list[tuple[str, dict[float, float]]], rates: list[float], band: float | None) -> dict[str, Any]:
    """Best rate per rung and Kendall tau of the rates' ordering between adjacent rungs (also beyond noise)."""
    rows = []
    for label, losses in rungs:
        ordered = [losses.get(rate, math.inf) for rate in rates]
        rows.append({"rung": label, "best_learning_rate": rates[int(np.argmin(ordered))], "losses": ordered})
    adjacent = []
    for lower, upper in itertools.pairwise(rows):
        first, second = _finite(lower["losses"]), _finite(upper["losses"])
        row = {"from": lower["rung"], "to": upper["rung"], "kendall_tau": kendall_tau(first, second)}
        if band is not None:
            row["beyond_noise"] = distinguishable_tau(first, second, band)
        adjacent.append(row)
    return {"learning_rates": rates, "rungs": rows, "adjacent": adjacent}


def _finite(values: list[float]) -> list[float]:
    return [value if math.isfinite(value) else 1e9 for value in values]


def _seed_std(noise: list[dict[str, Any]]) -> float | None:
    if not noise:
        return None
    differences = [r["eval_loss"] - r["reference"] for r in noise]
    return float(np.sqrt(np.mean(np.square(differences)) / 2))  # var(a - b) = 2 var


def _spread(values: list[float]) -> float:
    return max(values) / min(values)


def verdicts(settings: FinetuneLadderSettings, best: dict, full_best: dict, band: float | None) -> dict[str, Any]:
    """Plain sentences, each with its numbers."""
    largest = settings.fractions[-1]
    by_rank = {rank: best[(largest, rank)]["interpolated"] for rank in settings.ranks}
    rank_spread = _spread(list(by_rank.values())) if len(by_rank) > 1 else 1.0
    rank_moves = rank_spread >= MOVES_FACTOR
    rank_text = (
        "With rank: one rank only, nothing to compare."
        if len(by_rank) == 1
        else (
            f"With rank: the best LoRA rate on the largest share of the data ({largest:g}) is "
            + ", ".join(f"{by_rank[r]:.2g} (rank {r})" for r in settings.ranks)
            + f" — a {rank_spread:.1f}x spread, so it {'moves' if rank_moves else 'does not move'} with rank"
            + f" (threshold {MOVES_FACTOR:g}x; grid-best rates: "
            + ", ".join(f"{best[(largest, r)]['grid']:g}" for r in settings.ranks)
            + ")."
        )
    )
    from scipy.stats import linregress

    data_rows = []
    for rank in settings.ranks:
        rates = [best[(f, rank)]["interpolated"] for f in settings.fractions]
        sizes = [best[(f, rank)]["train_rows"] for f in settings.fractions]
        slope = float(linregress(np.log(sizes), np.log(rates)).slope) if len(set(rates)) > 1 else 0.0
        data_rows.append({"rank": rank, "spread": _spread(rates), "slope": slope, "rates": rates})
    data_spread = max(row["spread"] for row in data_rows)
    data_moves = data_spread >= MOVES_FACTOR
    mean_slope = float(np.mean([row["slope"] for row in data_rows]))
    data_text = (
        f"With data: from {settings.fractions[0]:g} to {largest:g} of the rows the best rate spans at most "
        f"{data_spread:.1f}x at any rank (mean slope of log rate vs log rows {mean_slope:+.2f}), so it "
        + (
            f"moves with data ({'up' if mean_slope > 0 else 'down'} as data grows)"
            if data_moves
            else "does not move with data"
        )
        + "."
    )
    out = {
        "rank": {"moves": rank_moves, "spread": rank_spread, "best_by_rank": by_rank, "text": rank_text},
        "data": {"moves": data_moves, "spread": data_spread, "mean_slope": mean_slope, "per_rank": data_rows},
    }
    out["data"]["text"] = data_text
    edges = [f"f{f:g}/r{r}" for (f, r), b in best.items() if b["edge"]]
    if edges:
        out["edges"] = (
            f"At {len(edges)} of {len(best)} LoRA rungs the best rate is at the edge of the grid "
            f"({', '.join(edges[:6])}{'…' if len(edges) > 6 else ''}): the true best may lie beyond it."
        )
    if full_best:
        ratios = {}
        for fraction, full in full_best.items():
            for rank in settings.ranks:
                if (fraction, rank) in best:
                    ratios[f"f{fraction:g}/r{rank}"] = best[(fraction, rank)]["interpolated"] / full["interpolated"]
        values = list(ratios.values())
        span = (
            f"{min(values):.1f}x"
            if round(min(values), 1) == round(max(values), 1)
            else (f"{min(values):.1f}x–{max(values):.1f}x")
        )
        full_edge = any(f["edge"] for f in full_best.values())
        lora_edge = any(best[(f, r)]["edge"] for f in full_best for r in settings.ranks if (f, r) in best)
        edges = [name for name, flag in (("full fine-tuning's", full_edge), ("LoRA's", lora_edge)) if flag]
        out["lora_vs_full"] = {
            "ratios": ratios,
            "full_best": {f"{k:g}": v for k, v in full_best.items()},
            "text": (
                "LoRA vs full: full fine-tuning's best rate is "
                + ", ".join(f"{v['interpolated']:.2g} at fraction {k:g}" for k, v in full_best.items())
                + f"; LoRA's best is {span} that"
                + (f" ({' and '.join(edges)} best at the edge of its grid: the ratio is a bound)" if edges else "")
                + " — published practice says ~10x."
            ),
        }
    return out


def analyse(
    settings: FinetuneLadderSettings,
    runs: list[dict[str, Any]],
    noise: list[dict[str, Any]],
    base_loss: float,
    *,
    seed: int,
) -> dict[str, Any]:
    lora = [r for r in runs if r["method"] == "lora"]
    best = {}
    for fraction, rank in itertools.product(settings.fractions, settings.ranks):
        rung = [r for r in lora if r["fraction"] == fraction and r["rank"] == rank]
        best[(fraction, rank)] = {**best_rate(rung), "train_rows": rung[0]["train_rows"]}
    full_best = {}
    if settings.full is not None:
        for fraction in settings.full.fractions:
            rung = [r for r in runs if r["method"] == "full" and r["fraction"] == fraction]
            full_best[fraction] = {**best_rate(rung), "train_rows": rung[0]["train_rows"]}
    seed_std = _seed_std(noise)
    band = 2 * seed_std * math.sqrt(2) if seed_std is not None else None
    losses = {(r["fraction"], r["rank"]): {} for r in lora}
    for r in lora:
        losses[(r["fraction"], r["rank"])][r["learning_rate"]] = r["eval_loss"]
    rates = settings.learning_rates
    transfer_data = {
        f"rank {rank}": transfer([(f"f{f:g}", losses[(f, rank)]) for f in settings.fractions], rates, band)
        for rank in settings.ranks
    }
    transfer_rank = {
        f"fraction {f:g}": transfer([(f"r{rank}", losses[(f, rank)]) for rank in settings.ranks], rates, band)
        for f in settings.fractions
    }
    said = verdicts(settings, best, full_best, band)
    laws = _data_laws(settings, best, seed)
    data_law = data_law_verdict(laws, band)
    if data_law is not None:
        said["data_law"] = data_law
    parts = [said["rank"], said["data"], said.get("lora_vs_full"), said.get("data_law")]
    headline = " ".join(part["text"] for part in parts if part)
    return {
        "kind": "finetune",
        "settings": settings.model_dump(mode="json"),
        "base_eval_loss": base_loss,
        "runs": runs,
        "noise": {"runs": noise, "seed_std": seed_std, "band": band},
        "best": [{"fraction": f, "rank": r, **b} for (f, r), b in best.items()],
        "full_best": [{"fraction": f, **b} for f, b in full_best.items()],
        "data_laws": laws,
        "transfer": {"across_data": transfer_data, "across_rank": transfer_rank},
        "verdicts": said,
        "headline": headline,
    }
