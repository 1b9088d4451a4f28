"""axolotl training YAML (`axolotl train x.yml`) → an openrecipe recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
from openrecipe.importers.llamafactory import AS_IS

RUNTIME_KEYS = {
    "output_dir": "runs go to `openrecipe run RECIPE --out DIR`",
    "dataset_prepared_path": "openrecipe caches stages by content hash",
    "wandb_project": "metrics go to metrics.jsonl (and TensorBoard with train.tensorboard)",
    "wandb_entity": "metrics go to metrics.jsonl",
    "wandb_watch": "metrics go to metrics.jsonl",
    "wandb_name": "metrics go to metrics.jsonl",
    "wandb_log_model": "metrics go to metrics.jsonl",
    "resume_from_checkpoint": "interrupted stages resume automatically",
    "logging_steps": "metrics.jsonl has every step",
    "flash_attention": "attention kernels are chosen by transformers",
    "sdp_attention": "attention kernels are chosen by transformers",
    "xformers_attention": "attention kernels are chosen by transformers",
    "tf32": "matmul precision is chosen per device",
    "optimizer": "openrecipe trains with AdamW",
    "eval_sample_packing": "eval examples are packed like training ones",
    "pad_to_sequence_len": "batches are padded to their longest example",
    "local_rank": "multi-process runs use torchrun/accelerate",
    "special_tokens": "the model's tokenizer is used as it is",
    "lora_model_dir": "start from an adapter by naming it as the base model",
    "strict": "recipes are always strict",
    "group_by_length": "batches follow the mixture order",
    "early_stopping_patience": "use probes (stop_when_passed) to stop early",
    "debug": "use --debug",
}
MAPPED = {
    "base_model", "base_model_config", "datasets", "val_set_size", "adapter", "load_in_4bit", "load_in_8bit",
    "sequence_len", "sample_packing", "lora_r", "lora_alpha", "lora_dropout", "lora_target_linear",
    "lora_target_modules", "gradient_accumulation_steps", "micro_batch_size", "num_epochs", "max_steps",
    "lr_scheduler", "learning_rate", "bf16", "fp16", "gradient_checkpointing", "warmup_steps",
    "warmup_ratio", "weight_decay", "max_grad_norm", "adam_beta1", "adam_beta2", "seed", "save_steps",
    "eval_steps", "chat_template", "train_on_inputs", "model_type", "tokenizer_type", "use_tensorboard",
    "pretraining_dataset", "deepspeed", "fsdp", "fsdp_config",
}  # fmt: skip


def _source(index: int, dataset: dict[str, Any], config_dir: Path, recipe_dir: Path, imported: Imported) -> dict:
    path = str(dataset.get("path", ""))
    if not path:
        raise OpenRecipeError(f"datasets[{index}] has no path")
    local = config_dir / path
    source: dict[str, Any] = {
        "path": relative_to(local, recipe_dir) if local.exists() else path,
        "name": dataset.get("name") or Path(path).stem or f"dataset{index}",
    }
    if dataset.get("split"):
        source["split"] = dataset["split"]
    kind = str(dataset.get("type", "alpaca"))
    key = f"datasets[{index}].type"
    if kind.startswith("alpaca"):
        source["format"] = "alpaca"
    elif kind.startswith("sharegpt"):
        source["format"] = "sharegpt"
    elif kind == "chat_template":
        source.update(_chat_template_mapping(dataset, imported, index))
    elif kind == "completion":
        source["format"] = "text"
        if dataset.get("field"):
            source["columns"] = {"text": dataset["field"]}
    else:
        imported.unmapped[key] = f"dataset type {kind!r} has no equivalent; the format is detected from the file"
    for extra in sorted(set(dataset) - {"path", "type", "split", "name", "field", "ds_type", "data_files"}):
        if extra not in ("field_messages", "message_property_mappings", "message_field_role", "message_field_content",
                         "roles", "roles_to_train", "train_on_eos", "chat_template"):  # fmt: skip
            imported.unmapped[f"datasets[{index}].{extra}"] = "no equivalent"
    return source


def _chat_template_mapping(dataset: dict[str, Any], imported: Imported, index: int) -> dict[str, Any]:
    """axolotl's chat_template datasets: messages under `field_messages`, keys and role names remapped."""
    mapping = dataset.get("message_property_mappings") or {}
    role_key = mapping.get("role", dataset.get("message_field_role", "role"))
    content_key = mapping.get("content", dataset.get("message_field_content", "content"))
    messages = dataset.get("field_messages", "messages")
    roles = dataset.get("roles") or {}
    if role_key == "role" and content_key == "content" and not roles:
        out: dict[str, Any] = {"format": "messages"}
        if messages != "messages":
            out["columns"] = {"messages": messages}
        return out
    tags: dict[str, Any] = {"role_tag": role_key, "content_tag": content_key}
    for ours, theirs in (("user_tag", "user"), ("assistant_tag", "assistant"), ("system_tag", "system")):
        names = roles.get(theirs) or [theirs]
        tags[ours] = names[0]
        if len(names) > 1:
            imported.unmapped[f"datasets[{index}].roles.{theirs}"] = f"only one name per role: {names[0]!r} is used"
    if dataset.get("roles_to_train") not in (None, ["assistant"], ["gpt"]):
        imported.unmapped[f"datasets[{index}].roles_to_train"] = "only assistant turns are trained on"
    return {"format": "sharegpt", "columns": {"messages": messages}, "tags": tags}


def _train(config: dict[str, Any], imported: Imported) -> dict[str, Any]:
    micro = int(config.get("micro_batch_size", 1))
    accumulation = int(config.get("gradient_accumulation_steps", 1))
    adapter = config.get("adapter")
    if adapter in (None, ""):
        method = "full"
    elif adapter == "qlora" or (adapter == "lora" and config.get("load_in_4bit")):
        method = "qlora"
    elif adapter == "lora":
        method = "lora"
    else:
        raise OpenRecipeError(f"adapter {adapter!r} has no equivalent", fix="openrecipe trains lora, qlora or full")
    if config.get("load_in_8bit"):
        imported.unmapped["load_in_8bit"] = "8-bit training has no equivalent; imported without it"
    betas = (config.get("adam_beta1", 0.9), config.get("adam_beta2", 0.999))
    val = config.get("val_set_size", 0.0)
    if not (isinstance(val, int | float) and 0 <= val < 0.5):
        imported.unmapped["val_set_size"] = "only a fraction below 0.5 has an equivalent (train.eval_fraction)"
        val = 0.0
    if config.get("fp16"):
        imported.unmapped["fp16"] = "fp16 training has no equivalent; precision is auto (bf16 where fast)"
    train: dict[str, Any] = {
        "method": method,
        "learning_rate": config.get("learning_rate", 3e-5),
        "epochs": config.get("num_epochs", 1),
        "max_steps": positive_or_none(config.get("max_steps")),
        "batch_size": micro * accumulation,
        "micro_batch_size": micro if accumulation > 1 else None,
        "weight_decay": config.get("weight_decay"),
        "max_grad_norm": config.get("max_grad_norm"),
        "betas": list(betas) if betas != (0.9, 0.999) else None,
        "eval_fraction": val,
        "eval_every_steps": config.get("eval_steps"),
        "save_every_steps": config.get("save_steps"),
        "gradient_checkpointing": bool(config.get("gradient_checkpointing")) or None,
        "precision": "bf16" if config.get("bf16") is True else None,
        "tensorboard": True if config.get("use_tensorboard") else None,
        "schedule": {
            "kind": schedule(config.get("lr_scheduler", "cosine"), imported, "lr_scheduler"),
            "warmup_steps": positive_or_none(config.get("warmup_steps")),
            "warmup_ratio": positive_or_none(config.get("warmup_ratio")),
        },
    }
    if method != "full":
        targets = config.get("lora_target_modules")
        train["lora"] = {
            "rank": config.get("lora_r", 8),
            "alpha": config.get("lora_alpha", 16),
            "dropout": config.get("lora_dropout"),
            "target_modules": "all-linear" if config.get("lora_target_linear") or not targets else list(targets),
        }
    return train


def import_axolotl(config_path: Path, out: Path) -> Imported:
    """Read an axolotl YAML and build the recipe that does the same on openrecipe."""
    config = read_config(config_path)
    imported = Imported(recipe={})
    model = config.get("base_model")
    if not model:
        raise OpenRecipeError("the config has no base_model", where=str(config_path))
    recipe_dir = out.parent
    datasets = config.get("datasets") or []
    pretraining = config.get("pretraining_dataset")
    if not datasets and not pretraining:
        raise OpenRecipeError("the config names no datasets", where=str(config_path))
    if pretraining:
        datasets = (pretraining if isinstance(pretraining, list) else [pretraining]) + list(datasets)
        datasets = [{**dataset, "type": dataset.get("type", "completion")} for dataset in datasets]
    sources = [_source(i, dict(d), config_path.parent, recipe_dir, imported) for i, d in enumerate(datasets)]
    local_model = config_path.parent / str(model)
    recipe: dict[str, Any] = {
        "name": config_path.stem,
        "description": f"Imported from axolotl config {config_path.name}",
        "seed": config.get("seed", 42),
        "base_model": relative_to(local_model, recipe_dir) if local_model.exists() else model,
    }
    recipe["chat_template"] = chat_template(config.get("chat_template"), imported, "chat_template")
    train = _train(config, imported)
    if config.get("deepspeed"):
        train["distributed"] = deepspeed_distributed(config["deepspeed"], [config_path.parent], imported)
    elif config.get("fsdp") or config.get("fsdp_config"):
        train["distributed"] = {"strategy": "fsdp"}  # FSDP2 on each decoder layer; its wrap settings are ours
    text_only = all(source.get("format") == "text" for source in sources)
    training: dict[str, Any]
    if text_only:
        training = {
            "id": "cpt",
            "kind": "cpt",
            "domain": [{"path": "stage:data"}],
            "replay_ratio": 0.0,
            "block_size": config.get("sequence_len", 2048),
            "train": train,
        }
    else:
        tokenize = {
            "max_length": config.get("sequence_len", 2048),
            "pack": bool(config.get("sample_packing")) or None,
            "train_on": "all" if config.get("train_on_inputs") else None,
        }
        training = {"id": "sft", "kind": "sft", "data": [{"path": "stage:data"}], "tokenize": tokenize, "train": train}
    recipe["stages"] = [{"id": "data", "kind": "clean", "sources": sources, "clean": AS_IS}, training]
    imported.recipe = recipe
    for key in config:
        if key in RUNTIME_KEYS:
            imported.unmapped.setdefault(key, RUNTIME_KEYS[key])
        elif key not in MAPPED:
            imported.unmapped.setdefault(key, "no equivalent")
    for key in ("model_type", "tokenizer_type", "base_model_config"):
        if key in config:
            imported.notes.append(f"{key}: read from the model folder")
    return imported
