"""Train one rung from scratch for an exact token budget. The `cpt` stage adapts an existing model to
text it re-tokenizes on every run; a rung instead starts from random weights and reads random crops of
the prepared byte corpus, which is what a ladder of many short runs needs to stay cheap."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openrecipe.ladder.corpus import VOCAB_SIZE, Corpus
from openrecipe.ladder.family import FamilySettings, Size, flops_per_token, llama_config, non_embedding_params
from openrecipe.utils.fs import atomic_write_json


@dataclass(frozen=True)
class RungSpec:
    width: int
    depth: int
    tokens: int
    learning_rate: float
    batch_size: int
    seed: int = 0

    @property
    def name(self) -> str:
        return f"w{self.width}-d{self.depth}-t{self.tokens}-lr{self.learning_rate:.3g}-b{self.batch_size}-s{self.seed}"


@dataclass(frozen=True)
class TrainDefaults:
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    eval_blocks: int = 64
    curve_points: int = 4


def eval_batch(corpus: Corpus, block_size: int, blocks: int) -> np.ndarray:
    """Fixed held-out blocks, evenly spaced through the held-out files."""
    usable = corpus.eval.size - block_size - 1
    starts = np.linspace(0, usable, blocks).astype(np.int64)
    return np.stack([corpus.eval[s : s + block_size + 1] for s in starts]).astype(np.int64)


def _loss(model, batch) -> Any:
    import torch

    tokens = torch.from_numpy(batch)
    logits = model(input_ids=tokens[:, :-1]).logits
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


def train_rung(
    spec: RungSpec,
    corpus: Corpus,
    family: FamilySettings,
    out_dir: Path,
    defaults: TrainDefaults = TrainDefaults(),
    *,
    threads: int = 1,
) -> dict[str, Any]:
    """Train, evaluate on the held-out blocks, write OUT_DIR/result.json (reused when it exists)."""
    import torch

    result_path = out_dir / "result.json"
    settings = {"defaults": asdict(defaults), "family": family.model_dump(mode="json")}
    if result_path.is_file():
        cached = json.loads(result_path.read_text())
        if cached.get("train_settings") == settings:  # the same run: reuse it
            return {**cached, "reused": True}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        result = _train(spec, corpus, family, defaults)
    finally:
        torch.set_num_threads(previous)
    result["threads"] = threads
    result["train_settings"] = settings
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(result_path, result)
    return result


def _train(spec: RungSpec, corpus: Corpus, family: FamilySettings, defaults: TrainDefaults) -> dict[str, Any]:
    import torch
    from transformers import LlamaForCausalLM

    size = Size(width=spec.width, depth=spec.depth)
    block = family.block_size
    steps = max(1, spec.tokens // (spec.batch_size * block))
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(llama_config(family, size, VOCAB_SIZE))
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=spec.learning_rate, betas=(0.9, 0.95), weight_decay=defaults.weight_decay
    )
    warmup = max(1, int(defaults.warmup_fraction * steps))
    rng = np.random.default_rng(spec.seed)  # the same seed gives every size the same data order
    held_out = eval_batch(corpus, block, defaults.eval_blocks)
    curve_every = max(1, steps // defaults.curve_points)
    curve: list[dict[str, float]] = []
    started, cpu_started = time.perf_counter(), time.process_time()
    loss_value = float("nan")
    for step in range(steps):
        lr = _lr(step, steps, warmup, spec.learning_rate, defaults.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        starts = rng.integers(0, corpus.train.size - block - 1, size=spec.batch_size)
        batch = np.stack([corpus.train[s : s + block + 1] for s in starts]).astype(np.int64)
        loss = _loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            break
        if (step + 1) % curve_every == 0 and step + 1 < steps:
            # Points along the way on every 8th held-out block (cheap); the final loss on all of them.
            curve.append({"step": step + 1, "train_loss": loss_value, "eval_loss": _evaluate(model, held_out[::8])})
    eval_loss = _evaluate(model, held_out) if math.isfinite(loss_value) else float("inf")
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    curve.append({"step": steps, "train_loss": loss_value, "eval_loss": eval_loss})
    result = {
        **asdict(spec),
        "non_embedding_params": non_embedding_params(family, size),
        "params": sum(p.numel() for p in model.parameters()),
        "steps": steps,
        "tokens_trained": steps * spec.batch_size * block,
        "flops": flops_per_token(family, size, VOCAB_SIZE) * steps * spec.batch_size * block,
        "eval_loss": eval_loss,
        "final_train_loss": loss_value,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),  # on a shared machine, what the rung cost; wall time is what it waited
        "curve": curve,
    }
    return result


def _lr(step: int, total: int, warmup: int, peak: float, min_ratio: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _evaluate(model, held_out: np.ndarray) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        losses = [
            float(_loss(model, held_out[i : i + 16])) * len(held_out[i : i + 16]) for i in range(0, len(held_out), 16)
        ]
    model.train()
    return sum(losses) / len(held_out)
