"""What a sweep found: each setting's mean and seed spread, whether it is distinguishable from the best
one given the measured seed noise, and a parallel-coordinates view (sweep.json, sweep.md, sweep.html)."""

from __future__ import annotations

import base64
import html
import io
import math
import statistics
from pathlib import Path
from typing import Any

from openrecipe.utils.fs import atomic_write_json, atomic_write_text

NOISE_SIGMAS = 2.0


def pooled_seed_std(groups: list[list[float]]) -> float | None:
    """Standard deviation between seeds, pooled over every setting run with two or more seeds."""
    degrees = sum(len(g) - 1 for g in groups if len(g) > 1)
    if degrees == 0:
        return None
    return math.sqrt(sum(statistics.variance(g) * (len(g) - 1) for g in groups if len(g) > 1) / degrees)


def noise_band(seed_std: float | None, count_a: int, count_b: int) -> float | None:
    """Two standard errors of a difference of two means: smaller differences are seed noise."""
    if seed_std is None:
        return None
    return NOISE_SIGMAS * seed_std * math.sqrt(1 / count_a + 1 / count_b)


def summarize_settings(rows: list[tuple[dict[str, Any], list[float]]], direction: str) -> dict[str, Any]:
    """Group runs by setting; rank by mean; mark each as best / not distinguishable / worse / better."""
    grouped: dict[str, dict[str, Any]] = {}
    for params, values in rows:
        key = repr(sorted(params.items()))
        entry = grouped.setdefault(key, {"params": params, "values": []})
        entry["values"].extend(values)
    settings = list(grouped.values())
    if not settings:
        return {"settings": [], "seed_std": None, "best": None}
    sign = 1 if direction == "minimize" else -1
    for entry in settings:
        values = entry["values"]
        entry.update(
            mean=statistics.fmean(values),
            std=statistics.stdev(values) if len(values) > 1 else None,
            runs=len(values),
        )
    settings.sort(key=lambda e: sign * e["mean"])
    seed_std = pooled_seed_std([e["values"] for e in settings])
    best = settings[0]
    for entry in settings:
        band = noise_band(seed_std, entry["runs"], best["runs"])
        entry["difference"] = entry["mean"] - best["mean"]
        entry["noise_band"] = band
        if entry is best:
            entry["verdict"] = "best"
        elif band is None:
            entry["verdict"] = "seed noise not measured (use --seeds 2 or more)"
        elif abs(entry["difference"]) <= band:
            entry["verdict"] = "not distinguishable from the best"
        else:
            entry["verdict"] = "worse than the best"
    return {"settings": settings, "seed_std": seed_std, "best": best}


def collect(study) -> dict[str, Any]:
    """Trials of the study by state, with per-setting statistics and timing."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    rows = [(t.params, list(t.user_attrs.get("seed_values") or [t.value])) for t in complete]
    summary = summarize_settings(rows, study.direction.name.lower())
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
    timing = {
        key: sum(float(t.user_attrs.get(key, 0.0)) for t in complete)
        for key in ("wall_seconds", "run_seconds", "train_seconds")
    }
    return {
        "study": study.study_name,
        "direction": study.direction.name.lower(),
        "trials": counts,
        "retried": sorted({int(t.system_attrs["failed_trial"]) for t in trials if "failed_trial" in t.system_attrs}),
        "timing": timing,
        **summary,
        "trial_rows": [
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "params": t.params,
                "seed_values": t.user_attrs.get("seed_values"),
                "run_dirs": t.user_attrs.get("run_dirs"),
                "retry_of": t.system_attrs.get("failed_trial"),
                "error": t.user_attrs.get("error"),
            }
            for t in trials
        ],
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def markdown(result: dict[str, Any], metric: str) -> str:
    lines = [
        f"# Sweep {result['study']} ({result['direction']} {metric})",
        "",
        "trials: " + ", ".join(f"{k} {v}" for k, v in result["trials"].items() if v),
        f"seed noise (pooled std between seeds): {_fmt(result['seed_std'])}",
        "",
    ]
    settings = result["settings"]
    if settings:
        names = list(settings[0]["params"])
        lines.append("| " + " | ".join([*names, "mean", "std", "runs", "vs best", "verdict"]) + " |")
        lines.append("|" + "---|" * (len(names) + 5))
        for entry in settings:
            cells = [_fmt(entry["params"].get(n)) for n in names]
            cells += [_fmt(entry["mean"]), _fmt(entry["std"]), str(entry["runs"]), _fmt(entry["difference"])]
            lines.append("| " + " | ".join([*cells, entry["verdict"]]) + " |")
    return "\n".join(lines) + "\n"


def _parallel_coordinates_png(study) -> str | None:
    """Optuna's own matplotlib parallel-coordinates plot, as a base64 PNG (None without two trials)."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = plot_parallel_coordinate(study)
    buffer = io.BytesIO()
    axes.figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(axes.figure)
    return base64.b64encode(buffer.getvalue()).decode()


def write_summary(study, sweep_dir: Path, metric: str) -> dict[str, Any]:
    result = collect(study)
    result["metric"] = metric
    atomic_write_json(sweep_dir / "sweep.json", result)
    text = markdown(result, metric)
    atomic_write_text(sweep_dir / "sweep.md", text)
    image = _parallel_coordinates_png(study)
    figure = f'<img alt="parallel coordinates" src="data:image/png;base64,{image}">' if image else ""
    atomic_write_text(
        sweep_dir / "sweep.html",
        "<!doctype html><meta charset=utf-8><title>sweep</title><body style='font-family:sans-serif'>"
        f"<pre>{html.escape(text)}</pre>{figure}</body>",
    )
    return result
