"""`openrecipe ladder`: grid the learning rate and batch size on every size at the smallest budget, train
every size at its best setting on the other budgets, fit the laws, write the prediction for the held-out
larger rung, and only then run that rung (and a small LR grid around the prediction) to check it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from openrecipe.errors import OpenRecipeError
from openrecipe.ladder.config import LadderSettings
from openrecipe.ladder.corpus import VOCAB_SIZE, Corpus, prepare_corpus
from openrecipe.ladder.family import Size, flops_per_token, non_embedding_params
from openrecipe.ladder.finetune_analysis import best_rate
from openrecipe.ladder.fit import (
    bootstrap_loss_law,
    data_curvature,
    fit_power_law,
    largest_held_out,
    leave_one_out,
    power_law_at,
)
from openrecipe.ladder.pretrain import RungSpec, TrainDefaults, train_rung
from openrecipe.ladder.transfer import transfer_table
from openrecipe.utils.fs import atomic_write_json, atomic_write_text, openrecipe_home

EXTRAPOLATION_WARNING = 10.0
MIN_CHECK_MULTIPLE = 8.0


def _train(spec: RungSpec, corpus: Corpus, settings: LadderSettings, ladder_dir: Path, phase: str) -> dict[str, Any]:
    defaults = TrainDefaults(eval_blocks=settings.eval_blocks)
    folder = ladder_dir / "rungs" / spec.name
    result = train_rung(spec, corpus, settings.family, folder, defaults, threads=settings.threads)
    return {**result, "phase": phase}


def sweep_phase(settings: LadderSettings, corpus: Corpus, ladder_dir: Path, seed: int, console: Console) -> list:
    """Every (learning rate, batch size) on every size at the smallest budget, and at every budget for the
    smallest `grid_every_budget` sizes."""
    runs = []
    for index, size in enumerate(settings.sizes):
        budgets = settings.budgets if index < settings.grid_every_budget else settings.budgets[:1]
        for tokens in budgets:
            for lr in settings.learning_rates:
                for batch in settings.batch_sizes:
                    spec = RungSpec(size.width, size.depth, tokens, lr, batch, seed)
                    runs.append(_train(spec, corpus, settings, ladder_dir, "sweep"))
            best = _best(runs, size, tokens)
            console.print(
                f"  size w{size.width}/d{size.depth} on {tokens:,} tokens: best lr {best['learning_rate']:.3g}, "
                f"batch {best['batch_size']}, loss {best['eval_loss']:.4f}"
            )
    return runs


def _best(runs: list[dict[str, Any]], size: Size, tokens: int) -> dict[str, Any]:
    candidates = [r for r in runs if r["width"] == size.width and r["depth"] == size.depth and r["tokens"] == tokens]
    return min(candidates, key=lambda r: r["eval_loss"])


def _swept(runs: list[dict[str, Any]], size: Size, tokens: int) -> bool:
    return any(r["width"] == size.width and r["depth"] == size.depth and r["tokens"] == tokens for r in runs)


def run_ladder(
    recipe_path: Path, overrides: list[str], ladder_dir: Path | None = None, *, console: Console | None = None
) -> dict[str, Any]:
    from openrecipe.recipe import load_recipe

    console = console or Console()
    recipe = load_recipe(recipe_path, overrides)
    settings: LadderSettings | None = getattr(recipe, "ladder", None)
    if settings is None:
        raise OpenRecipeError(
            "the recipe has no `ladder:` block", where=str(recipe_path), fix="see recipes/ladder-demo.yaml"
        )
    ladder_dir = ladder_dir or Path("ladders") / recipe.name
    ladder_dir.mkdir(parents=True, exist_ok=True)
    if settings.kind == "finetune":
        from openrecipe.ladder.finetune import run_finetune_ladder

        return run_finetune_ladder(recipe, recipe_path, settings, ladder_dir, console)
    started = time.perf_counter()
    corpus = prepare_corpus(openrecipe_home() / "ladder-corpus" / settings.corpus)
    console.print(f"corpus: {corpus.meta['train_tokens']:,} training tokens from {corpus.meta['files']} files")
    _write_provenance(recipe, recipe_path, ladder_dir, corpus)
    sweep = sweep_phase(settings, corpus, ladder_dir, recipe.seed, console)
    laws = _rate_laws(settings, sweep)
    points = _budget_phase(settings, corpus, ladder_dir, recipe.seed, sweep, laws)
    noise = _noise_phase(settings, corpus, ladder_dir, recipe.seed, sweep)
    prediction = _predict(settings, laws, points, recipe.seed)
    atomic_write_json(ladder_dir / "prediction.json", prediction)  # written before the check rung runs
    console.print(
        f"prediction for w{settings.predict.width}/d{settings.predict.depth} on {settings.predict.tokens:,} tokens: "
        f"loss {prediction['loss']:.4f} [{prediction['loss_interval'][0]:.4f}, "
        f"{prediction['loss_interval'][1]:.4f}], lr {prediction['learning_rate']:.3g}, batch {prediction['batch_size']}"
    )
    rehearsal = prediction["fit"]["largest_held_out"]
    console.print(
        f"fit: leave-one-out rms error {_pct(prediction['fit']['leave_one_out']['rms'])}; the largest size predicted "
        f"from the smaller ones: rms {_pct(rehearsal['rms'])}, worst {_pct(rehearsal['max_abs'])}"
    )
    for warning in prediction["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    check = _check(settings, corpus, ladder_dir, recipe.seed, prediction)
    result = _assemble(settings, corpus, sweep, points, noise, prediction, check, time.perf_counter() - started)
    atomic_write_json(ladder_dir / "ladder.json", result)
    from openrecipe.ladder.report import write_report

    write_report(result, ladder_dir)
    return result


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _rate_laws(settings, sweep) -> dict[str, dict[str, Any]]:
    """The best learning rate and batch size of every swept (size, budget) as power laws of its compute
    (DeepSeek's form). The rate is the vertex of a parabola in log(rate) through the grid's best and its
    neighbours, at the best batch: a 2x grid alone would move the law in steps of 2x."""
    cells = []
    for size in settings.sizes:
        for tokens in settings.budgets:
            if not _swept(sweep, size, tokens):
                continue
            best = _best(sweep, size, tokens)
            same_batch = [
                r
                for r in sweep
                if (r["width"], r["depth"], r["tokens"], r["batch_size"])
                == (size.width, size.depth, tokens, best["batch_size"])
            ]
            rate = best_rate(same_batch)
            cells.append(
                {
                    "width": size.width,
                    "depth": size.depth,
                    "tokens": tokens,
                    "flops": best["flops"],
                    "grid_learning_rate": best["learning_rate"],
                    "learning_rate": rate["interpolated"],
                    "at_grid_edge": rate["edge"],
                    "batch_size": best["batch_size"],
                }
            )
    compute = np.array([c["flops"] for c in cells])
    return {
        "learning_rate": {
            **fit_power_law(compute, np.array([c["learning_rate"] for c in cells])),
            "cells": cells,
        },
        "batch_size": fit_power_law(compute, np.array([c["batch_size"] for c in cells], dtype=float)),
    }


def _write_provenance(recipe, recipe_path: Path, ladder_dir: Path, corpus: Corpus) -> None:
    """The resolved recipe and a manifest (versions, platform, code, corpus hashes) beside the results:
    what `publish` ships and what a reader needs to run the same ladder."""
    import yaml

    from openrecipe.provenance.manifest import code_version, git_commit, package_versions, platform_info

    dump = recipe.model_dump(mode="json", exclude_none=True)
    atomic_write_text(ladder_dir / "recipe.resolved.yaml", yaml.safe_dump(dump, sort_keys=False, allow_unicode=True))
    recipe_dir = recipe_path.resolve().parent
    manifest = {
        "kind": "ladder",
        "recipe": dump,
        "recipe_dir": str(recipe_dir),
        "seed": recipe.seed,
        "packages": package_versions(),
        "platform": platform_info(),
        "code_version": code_version(),
        "git_commit": git_commit(recipe_dir),
        "corpus": {k: v for k, v in corpus.meta.items() if k != "root"},
    }
    atomic_write_json(ladder_dir / "manifest.json", manifest)


def _budget_phase(settings, corpus, ladder_dir, seed, sweep, laws) -> list[dict[str, Any]]:
    """Each size on every budget, each run with its own cosine schedule to its budget: the grid's best where
    the rate grid ran there, otherwise (by default) the rate the law predicts at the run's compute. These
    are the (N, D, L) points of the fit."""
    points = []
    for size in settings.sizes:
        first = _best(sweep, size, settings.budgets[0])
        per_token = flops_per_token(settings.family, size, VOCAB_SIZE)
        for tokens in settings.budgets:
            if _swept(sweep, size, tokens):
                points.append(_best(sweep, size, tokens))
                continue
            lr = first["learning_rate"]
            if settings.budget_learning_rate == "law":
                lr = float(f"{power_law_at(laws['learning_rate'], per_token * tokens):.3g}")
            spec = RungSpec(size.width, size.depth, tokens, lr, first["batch_size"], seed)
            points.append(_train(spec, corpus, settings, ladder_dir, "budget"))
    return points


def _noise_phase(settings, corpus, ladder_dir, seed, sweep) -> list[dict[str, Any]]:
    """The best setting of each size again with other seeds: the spread is the seed noise of a loss."""
    runs = []
    for size in settings.sizes:
        best = _best(sweep, size, settings.budgets[0])
        for offset in range(1, settings.noise_seeds + 1):
            spec = RungSpec(
                size.width, size.depth, best["tokens"], best["learning_rate"], best["batch_size"], seed + offset
            )
            runs.append({**_train(spec, corpus, settings, ladder_dir, "noise"), "reference": best["eval_loss"]})
    return runs


def _predict(settings: LadderSettings, laws, points, seed: int) -> dict[str, Any]:
    target = Size(width=settings.predict.width, depth=settings.predict.depth)
    n_target = non_embedding_params(settings.family, target)
    d_target = settings.predict.tokens
    points = [p for p in points if np.isfinite(p["eval_loss"])]  # a diverged run has no loss to fit
    n = np.array([p["non_embedding_params"] for p in points], dtype=float)
    d = np.array([p["tokens_trained"] for p in points], dtype=float)
    losses = np.array([p["eval_loss"] for p in points], dtype=float)
    fit = bootstrap_loss_law(n, d, losses, resamples=settings.bootstrap, seed=seed, at=(n_target, d_target))
    fit["leave_one_out"] = leave_one_out(n, d, losses, np.array(fit["theta"]))
    fit["largest_held_out"] = largest_held_out(n, d, losses)
    fit["data_curvature"] = data_curvature(n, d, losses)
    lr_law, batch_law = laws["learning_rate"], laws["batch_size"]
    target_flops = flops_per_token(settings.family, target, VOCAB_SIZE) * d_target
    largest = max(p["flops"] for p in points)
    warnings = []
    if target_flops > EXTRAPOLATION_WARNING * largest:
        warnings.append(
            f"the predicted rung needs {target_flops / largest:.1f}x the compute of the largest fitted rung "
            f"(beyond {EXTRAPOLATION_WARNING:g}x the fitted range: trust the interval, not the point)"
        )
    if target_flops < MIN_CHECK_MULTIPLE * largest:
        warnings.append(
            f"the predicted rung is only {target_flops / largest:.1f}x the compute of the largest fitted rung; "
            f"a check below {MIN_CHECK_MULTIPLE:g}x says little about extrapolation"
        )
    warnings += _curvature_warning(fit["data_curvature"])
    batch = max(1, round(power_law_at(batch_law, target_flops)))
    return {
        "width": target.width,
        "depth": target.depth,
        "non_embedding_params": n_target,
        "tokens": d_target,
        "flops": target_flops,
        "compute_multiple_of_largest_rung": target_flops / largest,
        "loss": fit["prediction"],
        "loss_interval": fit["prediction_interval"],
        "learning_rate": power_law_at(lr_law, target_flops),
        "batch_size": batch,
        "fit": fit,
        "learning_rate_law": lr_law,
        "batch_size_law": batch_law,
        "warnings": warnings,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _curvature_warning(curvature: dict[str, Any]) -> list[str]:
    sizes = curvature["sizes"]
    if not curvature["accelerating"]:
        return []
    largest = " (the largest among them)" if sizes[-1]["accelerating"] else ""
    return [
        f"at {curvature['accelerating']} of {len(sizes)} sizes{largest} each larger budget lowered the loss more per "
        "e-fold of tokens than the one before: the rungs are still early in training, where the law (whose drops "
        "shrink with data) cannot follow, so expect it to predict too high a loss; longer rungs are the fix"
    ]


def _check(settings, corpus, ladder_dir, seed, prediction) -> dict[str, Any]:
    """Run the predicted rung at the predicted rate and at the check multiples of it."""
    runs = []
    for multiple in settings.predict.check_multipliers:
        spec = RungSpec(
            prediction["width"],
            prediction["depth"],
            prediction["tokens"],
            prediction["learning_rate"] * multiple,
            prediction["batch_size"],
            seed,
        )
        runs.append({**_train(spec, corpus, settings, ladder_dir, "check"), "multiple": multiple})
    at_prediction = min(runs, key=lambda r: abs(np.log(r["multiple"])))
    best = min(runs, key=lambda r: r["eval_loss"])
    low, high = prediction["loss_interval"]
    actual = at_prediction["eval_loss"]
    return {
        "runs": runs,
        "actual_loss": actual,
        "loss_error_relative": (prediction["loss"] - actual) / actual,
        "inside_interval": low <= actual <= high,
        "best_grid_loss": best["eval_loss"],
        "best_grid_learning_rate": best["learning_rate"],
        "predicted_lr_loss_above_best_relative": (actual - best["eval_loss"]) / best["eval_loss"],
    }


def _assemble(settings, corpus, sweep, points, noise, prediction, check, seconds) -> dict[str, Any]:
    ladder_runs = _unique(sweep + points + noise)
    ladder_flops = sum(r["flops"] for r in ladder_runs)
    ladder_seconds = sum(r["seconds"] for r in ladder_runs)
    target_run = min(check["runs"], key=lambda r: abs(np.log(r["multiple"])))
    noise_std = _seed_std(noise)
    n_params = [non_embedding_params(settings.family, s) for s in settings.sizes]
    goals = {
        "final_loss_within_2pct": abs(check["loss_error_relative"]) <= 0.02,
        "predicted_lr_within_1pct_of_grid_best": check["predicted_lr_loss_above_best_relative"] <= 0.01,
        "ladder_compute_at_most_20pct": ladder_flops / prediction["flops"] <= 0.20,
    }
    headline = (
        f"predicted loss {prediction['loss']:.4f}, actual {check['actual_loss']:.4f} "
        f"({100 * check['loss_error_relative']:+.2f}%); predicted LR's loss is "
        f"{100 * check['predicted_lr_loss_above_best_relative']:+.2f}% vs the grid's best; ladder compute "
        f"{100 * ladder_flops / prediction['flops']:.1f}% of the predicted rung"
    )
    return {
        "corpus": corpus.meta,
        "settings": settings.model_dump(mode="json"),
        "sizes_non_embedding_params": n_params,
        "non_embedding_span": max(n_params) / min(n_params),
        "runs": ladder_runs,
        "points": points,
        "noise": {"runs": noise, "seed_std": noise_std},
        "prediction": prediction,
        "check": check,
        "transfer": transfer_table(settings, [r for r in sweep if r["tokens"] == settings.budgets[0]], noise_std),
        "budget": {
            "ladder_flops": ladder_flops,
            "predicted_rung_flops": prediction["flops"],
            "fraction_flops": ladder_flops / prediction["flops"],
            "ladder_seconds": ladder_seconds,
            "predicted_rung_seconds": target_run["seconds"],
            "fraction_seconds": ladder_seconds / max(1e-9, target_run["seconds"]),
            "counted": "sweep, budget and noise runs of the fitted sizes",
            "not_counted": "the learning-rate grid at the predicted rung (the check itself)",
            "check_runs": len(check["runs"]),
            "check_flops": sum(r["flops"] for r in check["runs"]),
            "check_seconds": sum(r["seconds"] for r in check["runs"]),
            "ladder_cpu_seconds": _cpu_seconds(ladder_runs),
            "check_cpu_seconds": _cpu_seconds(check["runs"]),
            "runs": len(ladder_runs) + len(check["runs"]),
            "reused_runs": sum(1 for r in ladder_runs + check["runs"] if r.get("reused")),
            "total_seconds": seconds,  # this invocation; the runs' own times are above
        },
        "goals": goals,
        "headline": headline,
    }


def _cpu_seconds(runs: list[dict[str, Any]]) -> float | None:
    """Process CPU time of the runs (None if any was trained before rungs recorded it)."""
    values = [r.get("cpu_seconds") for r in runs]
    return None if None in values else float(sum(values))


def _unique(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, out = set(), []
    for run in runs:
        key = (run["width"], run["depth"], run["tokens"], run["learning_rate"], run["batch_size"], run["seed"])
        if key not in seen:
            seen.add(key)
            out.append(run)
    return out


def _seed_std(noise: list[dict[str, Any]]) -> float | None:
    """Pooled over sizes: each noise run differs from its reference only by the seed."""
    if not noise:
        return None
    differences = [r["eval_loss"] - r["reference"] for r in noise]
    return float(np.sqrt(np.mean(np.square(differences)) / 2))  # var(a - b) = 2 var
