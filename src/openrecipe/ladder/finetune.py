"""`openrecipe ladder` with `kind: finetune`: the recipe's sft stage on rungs of data fraction x LoRA rank,
a learning-rate grid at each rung (and full fine-tuning beside it), every run a normal run folder. Loss is
measured on one held-out split of every data source that no rung trains on; the smaller fractions are
nested subsets of the larger ones."""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from openrecipe.config.references import StageRef
from openrecipe.errors import OpenRecipeError
from openrecipe.ladder.finetune_config import FinetuneLadderSettings
from openrecipe.recipe.runner import recipe_chat_template, run_recipe
from openrecipe.stages.base import StageContext, StageResult
from openrecipe.utils.fs import atomic_write_json, atomic_write_text

HELDOUT_SALT = 104729


@dataclass(frozen=True)
class FinetuneRun:
    """One run of the ladder: which rows, which method and rank, which rate, which seed."""

    fraction: float
    method: str  # lora | full
    rank: int | None
    learning_rate: float
    seed: int

    @property
    def name(self) -> str:
        rank = f"r{self.rank}" if self.method == "lora" else "full"
        return f"f{self.fraction:g}-{rank}-lr{self.learning_rate:g}-s{self.seed}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "fraction": self.fraction,
            "method": self.method,
            "rank": self.rank,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
        }


@dataclass
class Prepared:
    """The rows every run draws from: per source, the held-out split and the training rows in a fixed order."""

    context: StageContext
    sources: list[dict[str, Any]]  # {label, weight, heldout: [...], train: [...]}
    heldout_examples: list[dict[str, list[int]]]
    model_location: str


def _sft_stage(recipe, settings: FinetuneLadderSettings):
    stage = next((s for s in recipe.stages if s.id == settings.stage), None)
    if stage is None or stage.kind != "sft":
        sft_ids = [s.id for s in recipe.stages if s.kind == "sft"]
        raise OpenRecipeError(
            f"ladder.stage {settings.stage!r} is not an sft stage of the recipe",
            where="ladder.stage",
            fix=f"use one of: {', '.join(sft_ids)}"
            if sft_ids
            else "add an sft stage (see recipes/ladder-finetune.yaml)",
        )
    return stage


def _upstream(recipe, stage) -> list:
    """The stages the sft stage reads from, and theirs, in recipe order."""
    by_id = {s.id: s for s in recipe.stages}
    needed, todo = set(), list(stage.stage_refs())
    while todo:
        stage_id = todo.pop()
        if stage_id not in needed and stage_id in by_id:
            needed.add(stage_id)
            todo += by_id[stage_id].stage_refs()
    return [s for s in recipe.stages if s.id in needed]


def prepare(recipe, recipe_dir: Path, settings: FinetuneLadderSettings, ladder_dir: Path, console: Console) -> Prepared:
    """Run the upstream stages once (a normal run folder, prep/), then split every data source."""
    from openrecipe.models.loading import load_tokenizer
    from openrecipe.models.templates import use_chat_template
    from openrecipe.stages.training_common import read_ref
    from openrecipe.train.batching import held_out

    stage = _sft_stage(recipe, settings)
    prep_dir = ladder_dir / "prep"
    report = {"stages": []}
    upstream = _upstream(recipe, stage)
    prep_recipe = recipe.model_copy(update={"stages": upstream, "ladder": None})
    if upstream and _finished_prep(prep_dir, prep_recipe) is not None:
        report = _finished_prep(prep_dir, prep_recipe)
        console.print(f"prep: reusing {prep_dir} (same recipe; its stages finished)")
    elif upstream:
        console.print(f"prep: {', '.join(s.id for s in upstream)} (once, into {prep_dir})")
        with open(ladder_dir / "prep.log", "a") as log:
            report = run_recipe(prep_recipe, prep_dir, recipe_dir=recipe_dir, console=Console(file=log, width=120))
    results = {
        entry["id"]: StageResult(
            metrics=entry.get("metrics", {}),
            artifacts={name: str(prep_dir / path) for name, path in entry.get("artifacts", {}).items()},
        )
        for entry in report["stages"]
    }
    context = StageContext(
        run_dir=prep_dir,
        stage_dir=prep_dir / stage.id,
        seed=recipe.seed,
        base_model=_base_location(recipe, recipe_dir),
        system_prompt=recipe.system_prompt,
        identity=recipe.identity,
        results=results,
        recipe_dir=recipe_dir,
        recipe_name=recipe.name,
        console=console,
        chat_template=recipe_chat_template(recipe, recipe_dir),
    )
    sources = []
    for salt, ref in enumerate(stage.data):
        records = [record.to_json() for record in read_ref(context, ref)]
        train_index, held_index = held_out(len(records), settings.heldout_fraction, recipe.seed + HELDOUT_SALT, salt)
        order = np.random.default_rng([recipe.seed, HELDOUT_SALT, salt]).permutation(train_index)
        sources.append(
            {
                "label": ref.label(),
                "weight": ref.weight,
                "heldout": [records[i] for i in held_index.tolist()],
                "train": [records[i] for i in order.tolist()],
            }
        )
    reference = context.resolve_model(stage.model)
    tokenizer = load_tokenizer(reference)
    use_chat_template(tokenizer, None, model_name=reference.name)
    system = stage.system_prompt if stage.system_prompt is not None else recipe.system_prompt
    heldout = _tokenize([row for source in sources for row in source["heldout"]], tokenizer, stage, system)
    if not heldout:
        raise OpenRecipeError(
            "the held-out split has no trainable examples",
            where="ladder.heldout_fraction",
            fix="raise heldout_fraction, or give the sft stage more data",
        )
    location = reference.path if reference.path is not None else reference.name
    return Prepared(context, sources, heldout, str(location))


def _finished_prep(prep_dir: Path, prep_recipe) -> dict[str, Any] | None:
    """The prep run's report when it finished with this very recipe: rungs read the same rows even after
    the code changed (the runner itself would re-run every stage on any code change)."""
    import yaml

    try:
        report = json.loads((prep_dir / "report.json").read_text())
        resolved = yaml.safe_load((prep_dir / "recipe.resolved.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    same = resolved == prep_recipe.model_dump(mode="json", exclude_none=True)
    return report if same and report.get("status") == "ok" else None


def _base_location(recipe, recipe_dir: Path) -> str:
    from openrecipe.config.references import DefaultRef, resolve_location

    if isinstance(recipe.base_model, DefaultRef):
        return "default"
    return str(resolve_location(recipe.base_model, recipe_dir))


def _tokenize(rows: list[dict[str, Any]], tokenizer, stage, system: str | None) -> list:
    from openrecipe.data.tokenize import tokenize_conversations

    chats = [row["messages"] for row in rows if row.get("messages") is not None]
    examples, _ = tokenize_conversations(tokenizer, chats, stage.tokenize, system_prompt=system)
    return examples


def write_fraction(prepared: Prepared, fraction: float, ladder_dir: Path) -> tuple[list[dict[str, Any]], int]:
    """JSONL files of the first `fraction` of each source's training rows; the data refs and the row count."""
    folder = ladder_dir / "data" / f"f{fraction:g}"
    folder.mkdir(parents=True, exist_ok=True)
    refs, rows = [], 0
    for source in prepared.sources:
        chosen = source["train"][: max(1, round(fraction * len(source["train"])))]
        path = folder / f"{source['label']}.jsonl"
        atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in chosen))
        refs.append(
            {"path": str(path.resolve()), "name": source["label"], "weight": source["weight"], "format": "messages"}
        )
        rows += len(chosen)
    return refs, rows


def _rung_recipe(recipe, stage, prepared: Prepared, spec: FinetuneRun, refs, settings: FinetuneLadderSettings):
    config = stage.model_dump(mode="json", exclude_none=True)
    config["data"] = refs
    if isinstance(stage.model, StageRef):
        config["model"] = prepared.model_location
    train = config["train"]
    train.update({"method": spec.method, "learning_rate": spec.learning_rate, "eval_fraction": 0.0})
    if spec.method == "lora":
        train.setdefault("lora", {})["rank"] = spec.rank
    if settings.epochs is not None:
        train["epochs"] = settings.epochs
        train.pop("max_steps", None)
    config["probes"] = {"identity": False, "extra": [], "stop_when_passed": False}
    return recipe.model_copy(update={"stages": [type(stage).model_validate(config)], "ladder": None, "seed": spec.seed})


def heldout_loss(model_dir: Path, examples: list) -> float:
    """Mean loss per trained token on the fixed held-out split, computed as the training loop's eval does."""
    import torch
    from transformers import AutoModelForCausalLM

    from openrecipe.train.forward import TrainedTokenLoss
    from openrecipe.train.steps import evaluate_loss

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else model.config.eos_token_id
    with torch.inference_mode():
        loss = evaluate_loss(
            TrainedTokenLoss(model), examples, int(pad or 0), 8, torch.device("cpu"), contextlib.nullcontext()
        )
    return float(loss)


def run_one(recipe, stage, prepared: Prepared, spec: FinetuneRun, settings, ladder_dir: Path) -> dict[str, Any]:
    """One run folder under runs/; a finished one (its result.json) is reused, so an interrupted ladder resumes."""
    run_dir = ladder_dir / "runs" / spec.name
    done = run_dir / "result.json"
    if done.is_file():
        previous = json.loads(done.read_text())
        if previous.get("spec") == spec.as_dict():
            return {**previous, "reused": True}
    refs, rows = write_fraction(prepared, spec.fraction, ladder_dir)
    started, cpu_start = time.perf_counter(), _cpu_seconds()
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "ladder-run.log", "w") as log:  # the stage's chatter stays off the terminal
        report = run_recipe(
            _rung_recipe(recipe, stage, prepared, spec, refs, settings),
            run_dir,
            recipe_dir=prepared.context.recipe_dir,
            console=Console(file=log, width=120),
        )
    metrics = report["stages"][-1]["metrics"]
    loss = heldout_loss(run_dir / stage.id / "model", prepared.heldout_examples)
    if not settings.keep_models:
        shutil.rmtree(run_dir / stage.id / "model", ignore_errors=True)
        shutil.rmtree(run_dir / stage.id / "checkpoints", ignore_errors=True)
    result = {
        "spec": spec.as_dict(),
        **spec.as_dict(),
        "run": str(run_dir.relative_to(ladder_dir)),
        "train_rows": rows,
        "steps": metrics.get("steps"),
        "train_tokens": metrics.get("tokens_seen") or metrics.get("tokens"),
        "final_train_loss": metrics.get("final_loss"),
        "eval_loss": loss if np.isfinite(loss) else float("inf"),
        "train_seconds": metrics.get("train_seconds"),
        "seconds": round(time.perf_counter() - started, 3),
        "cpu_seconds": round(_cpu_seconds() - cpu_start, 3),  # this process's threads: the run is in-process
    }
    atomic_write_json(done, result)
    return result


def plan(settings: FinetuneLadderSettings, seed: int) -> list[FinetuneRun]:
    runs = [
        FinetuneRun(fraction, "lora", rank, lr, seed)
        for fraction in settings.fractions
        for rank in settings.ranks
        for lr in settings.learning_rates
    ]
    if settings.full is not None:
        runs += [
            FinetuneRun(fraction, "full", None, lr, seed)
            for fraction in settings.full.fractions
            for lr in settings.full.learning_rates
        ]
    return runs


def run_finetune_ladder(
    recipe, recipe_path: Path, settings: FinetuneLadderSettings, ladder_dir: Path, console: Console
) -> dict[str, Any]:
    from openrecipe.ladder.finetune_analysis import analyse
    from openrecipe.ladder.finetune_report import write_report

    started, cpu_start = time.perf_counter(), _cpu_seconds()
    if settings.threads is not None:
        import torch

        torch.set_num_threads(settings.threads)
    recipe_dir = recipe_path.resolve().parent
    stage = _sft_stage(recipe, settings)
    prepared = prepare(recipe, recipe_dir, settings, ladder_dir, console)
    sizes = ", ".join(f"{s['label']} {len(s['train'])} train / {len(s['heldout'])} held out" for s in prepared.sources)
    console.print(f"data: {sizes}; {len(prepared.heldout_examples)} held-out examples")
    base_loss = heldout_loss(Path(_model_dir(prepared.model_location)), prepared.heldout_examples)
    console.print(f"base model held-out loss {base_loss:.4f}")
    runs = []
    planned = plan(settings, recipe.seed)
    for index, spec in enumerate(planned, 1):
        runs.append(run_one(recipe, stage, prepared, spec, settings, ladder_dir))
        console.print(
            f"  [{index}/{len(planned)}] {spec.name}: held-out loss {runs[-1]['eval_loss']:.4f} "
            f"({runs[-1]['steps']} steps, {runs[-1]['seconds']:.0f} s)"
        )
    noise = _noise(recipe, stage, prepared, settings, ladder_dir, runs, console)
    result = analyse(settings, runs, noise, base_loss, seed=recipe.seed)
    result["data"] = {
        "sources": [
            {
                "label": s["label"],
                "weight": s["weight"],
                "train_rows": len(s["train"]),
                "heldout_rows": len(s["heldout"]),
            }
            for s in prepared.sources
        ],
        "heldout_examples": len(prepared.heldout_examples),
    }
    result["model"] = prepared.model_location
    result["budget"] = _budget(runs + noise, time.perf_counter() - started, _cpu_seconds() - cpu_start)
    atomic_write_json(ladder_dir / "ladder.json", result)
    write_report(result, ladder_dir)
    return result


def _budget(runs: list[dict[str, Any]], wall: float, cpu: float) -> dict[str, Any]:
    """What the runs cost when they ran (also those reused from an earlier invocation), and what this
    invocation cost (preparation, scoring the base model, the runs it did not reuse)."""
    cpu_known = all(r.get("cpu_seconds") is not None for r in runs)
    return {
        "runs": len(runs),
        "reused_runs": sum(1 for r in runs if r.get("reused")),
        "run_seconds": round(sum(r["seconds"] for r in runs), 1),
        "run_cpu_seconds": round(sum(r["cpu_seconds"] for r in runs), 1) if cpu_known else None,
        "train_seconds": round(sum(r["train_seconds"] or 0 for r in runs), 1),
        "total_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
    }


def _noise(recipe, stage, prepared, settings, ladder_dir, runs, console) -> list[dict[str, Any]]:
    """The best LoRA run at the largest fraction again with other seeds: their spread is the seed noise."""
    largest = [r for r in runs if r["method"] == "lora" and r["fraction"] == settings.fractions[-1]]
    best = min(largest, key=lambda r: r["eval_loss"])
    out = []
    for offset in range(1, settings.noise_seeds + 1):
        spec = FinetuneRun(best["fraction"], "lora", best["rank"], best["learning_rate"], recipe.seed + offset)
        out.append({**run_one(recipe, stage, prepared, spec, settings, ladder_dir), "reference": best["eval_loss"]})
        console.print(f"  noise {spec.name}: {out[-1]['eval_loss']:.4f} (seed {recipe.seed}: {best['eval_loss']:.4f})")
    return out


def _model_dir(location: str) -> str:
    if location == "default":
        from openrecipe.models.default import ensure_default_model

        return str(ensure_default_model())
    return location


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
