"""The training loop: explicit, resumable bit for bit, safe against NaN, signals and crashes.

Read top to bottom: set up → resume → for each optimizer step: forward/backward over micro-batches,
clip, skip non-finite updates, step, log, evaluate/probe, checkpoint → save outputs.
"""

from __future__ import annotations

import json
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from openrecipe.checkpoint.manager import CheckpointManager, fault_from_env
from openrecipe.checkpoint.tensors import (
    optimizer_from_tensors,
    optimizer_to_tensors,
    rng_from_tensors,
    rng_to_tensors,
)
from openrecipe.config.common import Identity
from openrecipe.errors import OpenRecipeError, RunInterrupted
from openrecipe.models.device import pick_device
from openrecipe.models.refs import ModelRef
from openrecipe.train.batching import TrainData, collate, epoch_order, steps_per_epoch, trainable_tokens
from openrecipe.train.config import ProbeSettings, TrainSettings
from openrecipe.train.forward import TrainedTokenLoss
from openrecipe.train.model_setup import TrainModel, load_for_training
from openrecipe.train.probes import build_probes, run_probes
from openrecipe.train.schedule import lr_at


@dataclass
class TrainJob:
    model: ModelRef
    data: TrainData
    settings: TrainSettings
    out_dir: Path
    seed: int = 0
    system_prompt: str | None = None
    identity: Identity | None = None
    probes: ProbeSettings | None = None
    data_fingerprint: str = ""
    force: bool = False
    extend: bool = False
    device: str = "auto"
    console: Console = field(default_factory=Console)


@dataclass
class TrainOutcome:
    metrics: dict[str, Any]
    artifacts: dict[str, str]
    model: TrainModel | None = None


class _Signals:
    """SIGTERM/SIGINT set a flag; the loop saves at the next step boundary and exits."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        for number in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[number] = signal.signal(number, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, number: int, frame: Any) -> None:
        self.received = number

    def __exit__(self, *exc: Any) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def _token_loss_sum(module, batch: dict[str, torch.Tensor], autocast) -> torch.Tensor:
    """Summed cross-entropy over trained tokens (`module` is a TrainedTokenLoss, maybe DDP-wrapped)."""
    with autocast:
        return module(**batch)


def _micro_batches(examples: list, size: int, max_tokens: int | None = None) -> list[list]:
    """Group similar lengths into the same micro-batch: less padding, same summed loss. With `max_tokens`,
    a micro-batch is split further so rows × longest row stays under it (one longer row goes alone)."""
    ordered = sorted(examples, key=lambda example: len(example["input_ids"]))
    chunks = [ordered[start : start + size] for start in range(0, len(ordered), size)]
    if max_tokens is None:
        return chunks
    split: list[list] = []
    for chunk in chunks:
        current: list = []
        for example in chunk:  # ascending lengths: the newest row is the longest
            if current and (len(current) + 1) * len(example["input_ids"]) > max_tokens:
                split.append(current)
                current = []
            current.append(example)
        split.append(current)
    return split


@torch.no_grad()
def evaluate_loss(model, examples, pad_token_id: int, micro: int, device: torch.device, autocast) -> float | None:
    if not examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), micro):
        chunk = examples[start : start + micro]
        batch = {k: v.to(device) for k, v in collate(chunk, pad_token_id).items()}
        total += float(_token_loss_sum(model, batch, autocast))
        count += trainable_tokens(chunk)
    model.train(was_training)
    return total / max(1, count)


def _trajectory(job: TrainJob, total_steps: int, world: int) -> dict[str, Any]:
    return {
        "settings": job.settings.trajectory(),
        "seed": job.seed,
        "data": job.data_fingerprint,
        "model": job.model.name,
        "system_prompt": job.system_prompt,
        "total_steps": total_steps,
        "world_size": world,
    }


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} → {b!r}")
    return out


def _truncate_metrics(path: Path, step: int) -> None:
    """After a resume, steps past the checkpoint are recomputed: drop their old log lines."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in kept))


def train(job: TrainJob) -> TrainOutcome:
    from accelerate import Accelerator

    settings, console = job.settings, job.console
    device = pick_device(job.device)
    accelerator = Accelerator(cpu=device.type == "cpu")
    world, rank = accelerator.num_processes, accelerator.process_index
    device = accelerator.device
    is_main = accelerator.is_main_process
    if settings.batch_size % world:
        raise OpenRecipeError(f"batch_size {settings.batch_size} is not divisible by the {world} processes")
    torch.manual_seed(job.seed)
    trainee = load_for_training(job.model, settings, device, seed=job.seed)
    tokenizer = trainee.tokenizer
    pad_id = tokenizer.pad_token_id
    named = trainee.trainable_parameters()
    optimizer = torch.optim.AdamW(
        list(named.values()),
        lr=settings.learning_rate,
        betas=settings.betas,
        weight_decay=settings.weight_decay,
    )
    model = TrainedTokenLoss(trainee.model)
    if settings.compile:
        model = torch.compile(model)
    if world > 1:
        model = accelerator.prepare_model(model)

    per_epoch = steps_per_epoch(job.data, settings.batch_size)
    total_steps = settings.max_steps or max(1, math.ceil(settings.epochs * per_epoch))
    trajectory = _trajectory(job, total_steps, world)
    job.out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = job.out_dir / "metrics.jsonl"
    fault = fault_from_env()
    manager = CheckpointManager(job.out_dir / "checkpoints", keep=settings.keep_checkpoints, fault_hook=fault)
    state: dict[str, Any] = {
        "step": 0,
        "tokens_seen": 0,
        "nonfinite_steps": 0,
        "consecutive_nonfinite": 0,
        "best_eval_loss": None,
        "best_step": None,
        "finished": False,
        "stop_reason": None,
        "train_seconds": 0.0,
    }
    resumed_from = None
    if is_main:
        for name in manager.clean_temporary():
            console.print(f"[yellow]removed an interrupted checkpoint write ({name})[/yellow]")
    checkpoint = manager.latest(report=lambda text: console.print(f"[yellow]{text}[/yellow]"))
    if checkpoint is not None:
        saved = checkpoint.json["trajectory"]
        changes = _differences(saved, trajectory)
        only_length = all(change.startswith("total_steps") for change in changes)
        if changes and not job.force and not (only_length and job.extend):
            hint = (
                "pass --extend to continue training to the new length"
                if only_length
                else "pass --force to resume anyway, or use a new run folder"
            )
            raise OpenRecipeError(
                f"the checkpoint in {manager.directory} was made with different settings: {'; '.join(changes)}",
                fix=hint,
            )
        state.update(checkpoint.json["train_state"])
        if changes and job.extend:
            state.update(finished=False, stop_reason=None)
        params = checkpoint.tensors["trainable"]
        missing = set(named) - set(params)
        if missing:
            raise OpenRecipeError(
                f"checkpoint {checkpoint.path.name} lacks weights for {sorted(missing)[0]}",
                fix="it belongs to another model; use a new run folder",
            )
        with torch.no_grad():
            for name, parameter in named.items():
                parameter.copy_(params[name].to(parameter.dtype))
        optimizer_from_tensors(optimizer, checkpoint.tensors["optimizer"], checkpoint.json["optimizer"])
        rng_key = f"rng_rank{rank}"
        if rng_key in checkpoint.tensors:
            rng_from_tensors(checkpoint.tensors[rng_key], checkpoint.json[rng_key])
        resumed_from = checkpoint.step
        if is_main:
            _truncate_metrics(metrics_path, checkpoint.step)
            console.print(f"[cyan]resuming from checkpoint step {checkpoint.step} of {total_steps}[/cyan]")
    elif is_main and metrics_path.exists():
        metrics_path.unlink()

    def save_checkpoint() -> None:
        tensors = {"trainable": {name: p.detach().cpu() for name, p in named.items()}}
        optimizer_tensors, optimizer_meta = optimizer_to_tensors(optimizer)
        tensors["optimizer"] = optimizer_tensors
        rng_tensors, rng_meta = rng_to_tensors()
        # Every process's RNG is gathered so a resumed distributed run continues each stream exactly.
        gathered = [(rng_tensors, rng_meta)]
        if world > 1:
            import torch.distributed as dist

            gathered = [None] * world  # type: ignore[list-item]
            dist.all_gather_object(gathered, ({k: v.tolist() for k, v in rng_tensors.items()}, rng_meta))
            gathered = [({k: torch.tensor(v, dtype=torch.uint8) for k, v in t.items()}, m) for t, m in gathered]
        parts = {"trajectory": trajectory, "train_state": dict(state), "optimizer": optimizer_meta}
        for index, (rng_tensor, meta) in enumerate(gathered):
            tensors[f"rng_rank{index}"] = rng_tensor
            parts[f"rng_rank{index}"] = meta
        if is_main:
            manager.save(state["step"], tensors, parts, protect={state["best_step"]} if state["best_step"] else None)
        accelerator.wait_for_everyone()

    token_cap = settings.token_cap(device.type)
    probes = build_probes(job.probes, job.identity) if job.probes is not None else []
    unwrapped = trainee.model
    eval_every = settings.eval_every_steps or per_epoch
    probe_every = job.probes.every_steps if job.probes and job.probes.every_steps else per_epoch
    from openrecipe.utils.peak import flops_per_token, measured_peak_flops

    config = trainee.model.config
    num_params = sum(p.numel() for p in trainee.model.parameters())
    # MFU against the measured matmul peak of the precision actually used (bf16 units or fp32).
    peak = measured_peak_flops(device, trainee.autocast_dtype or torch.float32) * world
    probe_log: list[dict[str, Any]] = []
    board = _tensorboard(job.out_dir / "tensorboard") if settings.tensorboard and is_main else None
    orders: dict[int, list] = {}
    started = time.perf_counter()
    train_seconds = 0.0
    with (
        _Signals() as signals,
        Progress(
            TextColumn("[bold]train[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  {task.fields[speed]} tok/s"),
            TimeRemainingColumn(),
            console=console,
            disable=not is_main,
            transient=False,
        ) as progress,
    ):
        task = progress.add_task("train", total=total_steps, completed=state["step"], loss="-", speed="-")
        while state["step"] < total_steps and not state["finished"]:
            step = state["step"]
            fault(f"step={step}")
            epoch, index = divmod(step, per_epoch)
            if epoch not in orders:
                orders = {epoch: epoch_order(job.data, epoch, job.seed)}
            batch_examples = orders[epoch][index * settings.batch_size : (index + 1) * settings.batch_size]
            local = batch_examples[rank::world]
            global_tokens = max(1, trainable_tokens(batch_examples))
            step_start = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            micro_batches = _micro_batches(local, settings.micro, token_cap)
            for position, chunk in enumerate(micro_batches):
                batch = {k: v.to(device) for k, v in collate(chunk, pad_id).items()}
                last = position == len(micro_batches) - 1
                context = accelerator.no_sync(model) if world > 1 and not last else _null()
                with context:
                    chunk_loss = _token_loss_sum(model, batch, trainee.autocast())
                    # DDP averages gradients over processes: scale so the result is the global token mean.
                    (chunk_loss * world / global_tokens).backward()
                    fault("mid_accumulation")
                loss_sum += chunk_loss.detach()
            if world > 1:
                loss_sum = accelerator.reduce(loss_sum, reduction="sum")
            loss = float(loss_sum) / global_tokens
            max_norm = settings.max_grad_norm if settings.max_grad_norm is not None else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(list(named.values()), max_norm))
            lr = lr_at(step, settings.learning_rate, total_steps, settings.schedule)
            if math.isfinite(loss) and math.isfinite(grad_norm):
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.step()
                state["consecutive_nonfinite"] = 0
            else:
                state["nonfinite_steps"] += 1
                state["consecutive_nonfinite"] += 1
            optimizer.zero_grad(set_to_none=True)
            seconds = time.perf_counter() - step_start
            train_seconds += seconds
            state["train_seconds"] = state.get("train_seconds", 0.0) + seconds  # across resumes
            tokens = sum(len(example["input_ids"]) for example in batch_examples)
            state["tokens_seen"] += tokens
            state["step"] = step + 1
            row: dict[str, Any] = {
                "step": step + 1,
                "epoch": round((step + 1) / per_epoch, 4),
                "loss": loss,
                "lr": lr,
                "grad_norm": grad_norm,
                "tokens": tokens,
                "tokens_per_s": round(tokens / seconds, 1),
                "nonfinite_steps": state["nonfinite_steps"],
            }
            if peak:
                seq = tokens / max(1, len(batch_examples))
                row["mfu"] = round(
                    tokens
                    * flops_per_token(
                        num_params,
                        config.num_hidden_layers,
                        int(seq),
                        config.hidden_size,
                        settings.method == "full",
                    )
                    / seconds
                    / peak,
                    4,
                )
            if state["consecutive_nonfinite"] >= settings.nonfinite_patience:
                _append(metrics_path, row, is_main)
                raise OpenRecipeError(
                    f"training diverged: {state['consecutive_nonfinite']} consecutive steps had a NaN/inf loss or "
                    f"gradient (updates skipped); the last good checkpoint is step "
                    f"{max(manager.steps(), default=0)}",
                    fix="lower learning_rate, keep max_grad_norm set, or check the data",
                )
            boundary = (step + 1) % per_epoch == 0 or step + 1 == total_steps
            new_best = False
            if (step + 1) % eval_every == 0 or step + 1 == total_steps:
                eval_loss = evaluate_loss(model, job.data.eval, pad_id, settings.micro, device, trainee.autocast())
                if eval_loss is not None:
                    row["eval_loss"] = eval_loss
                    if state["best_eval_loss"] is None or eval_loss < state["best_eval_loss"]:
                        state.update(best_eval_loss=eval_loss, best_step=step + 1)
                        new_best = True
            if probes and ((step + 1) % probe_every == 0 or boundary):
                results = run_probes(
                    unwrapped,
                    tokenizer,
                    probes,
                    job.system_prompt,
                    device,
                    trainee.autocast(),
                    job.probes.max_new_tokens,
                )
                row["probes_passed"] = sum(r.passed for r in results)
                probe_log.append({"step": step + 1, "results": [r.__dict__ for r in results]})
                if (
                    job.probes.stop_when_passed
                    and all(r.passed for r in results)
                    and (step + 1) / per_epoch >= job.probes.min_epochs
                ):
                    state.update(finished=True, stop_reason=f"all {len(results)} probes passed at step {step + 1}")
            if state["step"] == total_steps and not state["finished"]:
                state.update(finished=True, stop_reason="reached the planned number of steps")
            _append(metrics_path, row, is_main)
            if board is not None:
                for key in ("loss", "lr", "grad_norm", "tokens_per_s", "eval_loss", "mfu"):
                    if key in row:
                        board.add_scalar(f"train/{key}", row[key], step + 1)
            progress.update(task, completed=state["step"], loss=f"{loss:.4f}", speed=f"{row['tokens_per_s']:.0f}")
            # The best checkpoint (lowest eval loss) is saved when found and kept beside the latest ones.
            if state["finished"] or new_best or (step + 1) % settings.save_every_steps == 0 or signals.received:
                save_checkpoint()
            if signals.received and not state["finished"]:
                raise RunInterrupted(
                    f"stopped by signal {signals.received} at step {state['step']}; re-run the same command to resume"
                )
    if board is not None:
        board.close()
    if is_main and probe_log:
        (job.out_dir / "probes.json").write_text(json.dumps(probe_log, ensure_ascii=False, indent=1))
    metrics = {
        "steps": state["step"],
        "total_steps": total_steps,
        "epochs": round(state["step"] / per_epoch, 3),
        "tokens_seen": state["tokens_seen"],
        "nonfinite_steps": state["nonfinite_steps"],
        "train_seconds": round(state.get("train_seconds", train_seconds), 2),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "stop_reason": state["stop_reason"],
        "resumed_from_step": resumed_from,
        "best_eval_loss": state["best_eval_loss"],
        "best_step": state["best_step"],
    }
    if metrics_path.exists():
        rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
        losses = [r["loss"] for r in rows if "loss" in r]
        if losses:
            metrics.update(first_loss=losses[0], final_loss=losses[-1])
        speeds = [r["tokens_per_s"] for r in rows[1:] if "tokens_per_s" in r]
        if speeds:
            metrics["tokens_per_s"] = round(sorted(speeds)[len(speeds) // 2], 1)
        mfus = [r["mfu"] for r in rows[1:] if "mfu" in r]
        if mfus:
            metrics["mfu"] = sorted(mfus)[len(mfus) // 2]
        if probe_log:
            metrics["probes_passed"] = probe_log[-1]["results"] and sum(r["passed"] for r in probe_log[-1]["results"])
            metrics["probes_total"] = len(probe_log[-1]["results"])
    return TrainOutcome(metrics, {"metrics": str(metrics_path)}, trainee if is_main else None)


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise OpenRecipeError(
            "tensorboard: true needs the tensorboard package", fix="pip install tensorboard, or set tensorboard: false"
        ) from None
    return SummaryWriter(str(folder))


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _append(path: Path, row: dict[str, Any], is_main: bool) -> None:
    if is_main:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
