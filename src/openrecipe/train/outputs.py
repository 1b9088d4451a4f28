"""What a training stage leaves behind: adapter/ and model/ folders, the loss curve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from openrecipe.train.model_setup import hold_frozen_base_in
from openrecipe.utils.fs import atomic_directory, atomic_write_json


def adopt_system_prompt(tokenizer, system_prompt: str | None) -> bool:
    """Make the recipe's system prompt the template's default (replacing e.g. SmolLM's built-in
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face"), so a served model that gets
    no system message behaves as it was trained. Returns whether the template changed."""
    template = getattr(tokenizer, "chat_template", None)
    if not system_prompt or not isinstance(template, str):
        return False
    probe = [{"role": "user", "content": "\u2063"}]
    without = tokenizer.apply_chat_template(probe, tokenize=False)
    with_empty = tokenizer.apply_chat_template([{"role": "system", "content": "\u2064"}, *probe], tokenize=False)
    prefix_default = without.split("\u2063")[0]
    prefix_given = with_empty.split("\u2064")[0]
    if not prefix_default.startswith(prefix_given):
        return False
    injected = prefix_default[len(prefix_given) :].split(tokenizer.eos_token or "\n")[0]
    if not injected or template.count(injected) != 1:
        return False
    escaped = json.dumps(system_prompt)[1:-1].replace("'", "\\'")
    tokenizer.chat_template = template.replace(injected, escaped)
    return True


def save_outputs(
    model,
    tokenizer,
    stage_dir: Path,
    *,
    method: str,
    base_reference: str,
    system_prompt: str | None,
    metadata: dict[str, Any],
) -> dict[str, str]:
    """adapter/ (LoRA) and model/ (a complete HF folder, LoRA merged) — both atomically."""
    artifacts: dict[str, str] = {}
    adopt_system_prompt(tokenizer, system_prompt)
    info = {"base_model": base_reference, "system_prompt": system_prompt, "method": method, **metadata}
    if method in ("lora", "qlora"):
        with atomic_directory(stage_dir / "adapter", overwrite=True) as tmp:
            model.save_pretrained(str(tmp))
            config_path = tmp / "adapter_config.json"
            config = json.loads(config_path.read_text())
            config["base_model_name_or_path"] = base_reference
            config_path.write_text(json.dumps(config, indent=2))
            tokenizer.save_pretrained(str(tmp))
            atomic_write_json(tmp / "openrecipe.json", info)
        artifacts["adapter"] = str(stage_dir / "adapter")
        hold_frozen_base_in(model, torch.float32)  # a bf16-held base merges in fp32 (exact: bf16 ⊂ fp32)
        merged = model.merge_and_unload()
    else:
        merged = model
    merged.config.use_cache = True
    with atomic_directory(stage_dir / "model", overwrite=True) as tmp:
        merged.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        atomic_write_json(tmp / "openrecipe.json", info)
    artifacts["model"] = str(stage_dir / "model")
    return artifacts


def plot_loss(metrics_path: Path, out: Path, title: str) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses, eval_steps, eval_losses = [], [], [], []
    for line in metrics_path.read_text().splitlines():
        row = json.loads(line)
        if "loss" in row:
            steps.append(row["step"])
            losses.append(row["loss"])
        if "eval_loss" in row:
            eval_steps.append(row["step"])
            eval_losses.append(row["eval_loss"])
    if not steps:
        return None
    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=110)
    axis.plot(steps, losses, label="train loss", linewidth=1.2)
    if eval_steps:
        axis.plot(eval_steps, eval_losses, "o-", label="eval loss")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return out
