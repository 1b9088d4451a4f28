"""LLaMA-Factory training YAML (`llamafactory-cli train x.yaml`) → an openrecipe recipe.

Datasets are named entries of `dataset_info.json`; the recipe's clean stage points at that file itself,
so column and role mappings are read from the same place LLaMA-Factory reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openrecipe.data.dataset_info import entry_to_source, pick_entry, read_dataset_info
from openrecipe.errors import OpenRecipeError
from openrecipe.importers.common import (
    Imported,
    chat_template,
    deepspeed_distributed,
    positive_or_none,
    read_config,
    relative_to,
    schedule,
)

# Keys that only steer LLaMA-Factory's own machinery (caches, workers, logging sinks, output folders):
# openrecipe decides these itself, so they are reported as having no equivalent with this reason.
RUNTIME_KEYS = {
    "do_train": "openrecipe trains when the recipe has a training stage",
    "output_dir": "runs go to `openrecipe run RECIPE --out DIR`",
    "overwrite_output_dir": "re-running resumes or reuses unchanged stages",
    "overwrite_cache": "openrecipe caches stages by content hash",
    "preprocessing_num_workers": "data preparation streams in one process",
    "dataloader_num_workers": "batches are built in the training process",
    "plot_loss": "every training stage writes loss.png",
    "report_to": "metrics go to metrics.jsonl (and TensorBoard with train.tensorboard)",
    "ddp_timeout": "multi-process runs use torchrun/accelerate defaults",
    "resume_from_checkpoint": "interrupted stages resume automatically",
    "logging_steps": "metrics.jsonl has every step",
    "save_only_model": "checkpoints always hold the full training state",
    "trust_remote_code": "pass --trust-remote-code on the command line",
    "per_device_eval_batch_size": "eval loss uses the training micro-batch",
    "eval_strategy": "eval runs every eval_every_steps, or at each epoch end",
    "max_samples": "no row cap: select rows in the data instead",
    "dataset_dir": "used to find dataset_info.json",
    "dataset": "imported as the clean stage's sources",
    "stage": "imported as the training stage's kind",
    "finetuning_type": "imported as train.method",
}


# LLaMA-Factory trains on its data as it is: the imported clean stage validates and reports, changes nothing.
AS_IS = {"dedup": False, "near_dedup": False, "pii": False, "max_chars": None}


def _method(config: dict[str, Any], imported: Imported) -> str:
    kind = config.get("finetuning_type", "lora")
    if kind not in ("lora", "full"):
        imported.unmapped["finetuning_type"] = f"{kind!r} has no equivalent; imported as lora"
        kind = "lora"
    if kind == "lora" and config.get("quantization_bit") == 4:
        return "qlora"
    if config.get("quantization_bit") is not None and config.get("quantization_bit") != 4:
        imported.unmapped["quantization_bit"] = "only 4-bit (QLoRA) training has an equivalent"
    return kind


def _lora(config: dict[str, Any]) -> dict[str, Any]:
    target = config.get("lora_target", "all")
    rank = config.get("lora_rank", 8)
    return {
        "rank": rank,
        "alpha": config.get("lora_alpha", rank * 2),  # LLaMA-Factory's default alpha is twice the rank
        "dropout": config.get("lora_dropout"),
        "target_modules": "all-linear"
        if target in ("all", None)
        else [name.strip() for name in str(target).split(",") if name.strip()],
    }


def _train(config: dict[str, Any], imported: Imported) -> dict[str, Any]:
    per_device = int(config.get("per_device_train_batch_size", 1))
    accumulation = int(config.get("gradient_accumulation_steps", 1))
    betas = (config.get("adam_beta1", 0.9), config.get("adam_beta2", 0.999))
    val_size = config.get("val_size")
    if isinstance(val_size, int | float) and not 0 <= val_size < 0.5:
        imported.unmapped["val_size"] = "only a fraction below 0.5 has an equivalent (train.eval_fraction)"
        val_size = None
    precision = "bf16" if config.get("bf16") else None
    if config.get("fp16"):
        imported.unmapped["fp16"] = "fp16 training has no equivalent; precision is auto (bf16 where fast)"
    train = {
        "method": _method(config, imported),
        "learning_rate": config.get("learning_rate", 5e-5),
        "epochs": config.get("num_train_epochs", 3.0),
        "max_steps": positive_or_none(config.get("max_steps")),
        "batch_size": per_device * accumulation,
        "micro_batch_size": per_device if accumulation > 1 else None,
        "weight_decay": config.get("weight_decay"),
        "max_grad_norm": config.get("max_grad_norm"),
        "betas": list(betas) if betas != (0.9, 0.999) else None,
        "eval_fraction": val_size if val_size is not None else 0.0,
        "eval_every_steps": config.get("eval_steps") if config.get("eval_strategy") == "steps" else None,
        "save_every_steps": config.get("save_steps"),
        "precision": precision,
        "tensorboard": True if config.get("report_to") == "tensorboard" else None,
        "schedule": {
            "kind": schedule(config.get("lr_scheduler_type", "linear"), imported, "lr_scheduler_type"),
            "warmup_steps": positive_or_none(config.get("warmup_steps")),
            "warmup_ratio": positive_or_none(config.get("warmup_ratio")),
        },
    }
    if train["method"] != "full":
        train["lora"] = _lora(config)
    return train


def _sources(
    config: dict[str, Any], dataset_info: Path | None, recipe_dir: Path, imported: Imported
) -> list[dict[str, Any]]:
    names = config.get("dataset") or []
    names = [name.strip() for name in names.split(",")] if isinstance(names, str) else list(names)
    if not names:
        raise OpenRecipeError(
            "the config names no `dataset`", fix="add `dataset: <name>` (an entry of dataset_info.json)"
        )
    if dataset_info is None:
        raise OpenRecipeError(
            "cannot find dataset_info.json for the config's datasets",
            fix="pass --dataset-info PATH/dataset_info.json (or set dataset_dir in the config)",
        )
    info = read_dataset_info(dataset_info)
    sources = []
    for name in names:
        entry_name, entry = pick_entry(info, name, str(dataset_info))
        resolved, local = entry_to_source(entry_name, entry, None, f"{dataset_info} ({entry_name})")
        if local:
            sources.append({"path": relative_to(dataset_info, recipe_dir), "dataset": entry_name, "name": entry_name})
        else:  # a hub dataset: named directly, with the entry's mapping
            sources.append(resolved.model_dump(exclude_defaults=True, mode="json"))
    weights = config.get("interleave_probs")
    if weights:
        imported.notes.append("interleave_probs became per-source weights of the training stage")
    return sources


def _data_refs(config: dict[str, Any], sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    weights = config.get("interleave_probs")
    if isinstance(weights, str):
        weights = [float(value) for value in weights.split(",")]
    if not weights or len(weights) != len(sources):
        return [{"path": "stage:data"}]
    return [
        {"path": "stage:data", "source": source["name"], "weight": weight}
        for source, weight in zip(sources, weights, strict=True)
    ]


def import_llamafactory(config_path: Path, out: Path, dataset_info: Path | None = None) -> Imported:
    """Read a LLaMA-Factory YAML and build the recipe that does the same on openrecipe."""
    config = read_config(config_path)
    imported = Imported(recipe={})
    stage = config.get("stage", "sft")
    if stage not in ("sft", "pt"):
        raise OpenRecipeError(
            f"stage {stage!r} has no equivalent", where=str(config_path), fix="openrecipe imports sft and pt configs"
        )
    if dataset_info is None:
        folder = Path(config.get("dataset_dir", "data"))
        candidates = [config_path.parent / folder / "dataset_info.json", Path.cwd() / folder / "dataset_info.json"]
        dataset_info = next((path for path in candidates if path.is_file()), None)
    recipe_dir = out.parent
    sources = _sources(config, dataset_info, recipe_dir, imported)
    model = config.get("model_name_or_path")
    if model is None:
        raise OpenRecipeError("the config has no model_name_or_path", where=str(config_path))
    base = relative_to(config_path.parent / model, recipe_dir) if (config_path.parent / model).exists() else model
    train = _train(config, imported)
    if config.get("deepspeed"):  # its examples name the JSON from LLaMA-Factory's folder: the config's, or here
        folders = [config_path.parent, Path.cwd()]
        train["distributed"] = deepspeed_distributed(config["deepspeed"], folders, imported)
    recipe: dict[str, Any] = {
        "name": config_path.stem,
        "description": f"Imported from LLaMA-Factory config {config_path.name}",
        "seed": config.get("seed", 42),
        "base_model": base,
    }
    recipe["chat_template"] = chat_template(config.get("template"), imported, "template")
    clean = {"id": "data", "kind": "clean", "sources": sources, "clean": AS_IS}
    if stage == "sft":
        tokenize = {
            "max_length": config.get("cutoff_len", 2048),
            "pack": bool(config.get("packing") or config.get("neat_packing")) or None,
            "train_on_turns": "last" if config.get("mask_history") else None,
            "train_on": "all" if config.get("train_on_prompt") else None,
        }
        training = {
            "id": "sft",
            "kind": "sft",
            "data": _data_refs(config, sources),
            "tokenize": tokenize,
            "train": train,
        }
    else:
        training = {
            "id": "cpt",
            "kind": "cpt",
            "domain": _data_refs(config, sources),
            "replay_ratio": 0.0,
            "block_size": config.get("cutoff_len", 2048),
            "train": train,
        }
    recipe["stages"] = [clean, training]
    imported.recipe = recipe
    mapped = {
        "model_name_or_path", "template", "seed", "lora_rank", "lora_alpha", "lora_dropout", "lora_target",
        "quantization_bit", "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate",
        "num_train_epochs", "max_steps", "weight_decay", "max_grad_norm", "adam_beta1", "adam_beta2", "val_size",
        "eval_steps", "save_steps", "bf16", "fp16", "lr_scheduler_type", "warmup_steps",
        "warmup_ratio", "cutoff_len", "packing", "neat_packing", "mask_history", "train_on_prompt",
        "interleave_probs", "deepspeed",
    }  # fmt: skip
    for key in config:
        if key in RUNTIME_KEYS:
            if key not in ("dataset", "dataset_dir", "stage", "finetuning_type", "report_to", "eval_strategy"):
                imported.unmapped.setdefault(key, RUNTIME_KEYS[key])
        elif key not in mapped:
            imported.unmapped.setdefault(key, "no equivalent")
    return imported
