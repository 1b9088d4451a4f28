"""The training loop: explicit, resumable bit for bit, safe against NaN, signals and crashes.

Read top to bottom: set up → resume → for each optimizer step: forward/backward over micro-batches,
clip, skip non-finite updates, step, log, evaluate/probe, checkpoint → save outputs.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from openrecipe.checkpoint.manager import CheckpointManager, fault_from_env
from openrecipe.config.common import Identity
from openrecipe.errors import OpenRecipeError, RunInterrupted
from openrecipe.models.device import pick_device
from openrecipe.models.refs import ModelRef, resolve_model_ref
from openrecipe.train import zero
from openrecipe.train.batching import TrainData, collate, epoch_order, steps_per_epoch, trainable_tokens
from openrecipe.train.config import ProbeSettings, TrainSettings
from openrecipe.train.distributed import (
    Fsdp2Shards,
    as_float,
    check_strategy,
    fingerprint,
    fsdp2_shard,
    most_across_ranks,
    preflight,
    set_gradient_sync,
)
from openrecipe.train.forward import TrainedTokenLoss
from openrecipe.train.model_setup import TrainModel, load_for_training
from openrecipe.train.probes import build_probes, run_probes
from openrecipe.train.schedule import lr_at
from openrecipe.train.state import Shards, TrainCheckpoint, TrainState
from openrecipe.train.steps import (
    Signals,
    append_row,
    evaluate_loss,
    micro_batches,
    static_micro_batches,
    tensorboard_writer,
)
from openrecipe.train.steps import token_loss_sum as _token_loss_sum  # a module global: tests poison it


@dataclass
class TrainJob:
    model: ModelRef | str
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

    def __post_init__(self) -> None:
        self.model = resolve_model_ref(self.model)  # a name is resolved once, here


@dataclass
class TrainOutcome:
    metrics: dict[str, Any]
    artifacts: dict[str, str]
    model: TrainModel | None = None


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
    """Set up model, optimizer and data; resume; step (evaluating, probing and saving on the way);
    summarize."""
    run = _Training(job)
    run.resume()
    run.loop()
    return run.summarize()


class _Training:
    """One training run, in the phases `train` calls in order."""

    def __init__(self, job: TrainJob) -> None:
        self.job, self.settings, self.console = job, job.settings, job.console
        self._setup_processes()
        self._setup_model()
        self._setup_optimizer()
        self._setup_data()
        self._setup_checkpoints()
        self._setup_monitoring()

    # -- set up ---------------------------------------------------------------------------------

    def _setup_processes(self) -> None:
        from datetime import timedelta

        import torch.distributed as dist
        from accelerate import Accelerator
        from accelerate.utils import InitProcessGroupKwargs

        device = pick_device(self.job.device)
        distributed = self.settings.distributed
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        check_strategy(distributed, os.environ)
        # The strategy of a multi-process run (one process ignores it).
        self.strategy = distributed.strategy if launched > 1 else None
        # A rank that dies leaves the others waiting in a collective: the timeout turns that wait into an error.
        timeout = InitProcessGroupKwargs(timeout=timedelta(seconds=distributed.timeout_s))
        if self.strategy == "deepspeed":
            # cpu=False: accelerate sends a CPU run to DDP otherwise; DeepSpeed finds its own device (CUDA or CPU).
            plugin = zero.plugin(distributed, self.settings.max_grad_norm)
            self.accelerator = Accelerator(cpu=False, deepspeed_plugin=plugin, kwargs_handlers=[timeout])
        else:
            self.accelerator = Accelerator(cpu=device.type == "cpu", kwargs_handlers=[timeout])
        # From torch.distributed: accelerate counts one process when DeepSpeed runs on CPU.
        initialized = dist.is_available() and dist.is_initialized()
        self.world = dist.get_world_size() if initialized else 1
        self.rank = dist.get_rank() if initialized else 0
        self.device = self.accelerator.device
        self.is_main = self.rank == 0
        if self.settings.batch_size % self.world:
            raise OpenRecipeError(
                f"batch_size {self.settings.batch_size} is not divisible by the {self.world} processes"
            )

    def _setup_model(self) -> None:
        torch.manual_seed(self.job.seed)
        self.trainee = load_for_training(self.job.model, self.settings, self.device, seed=self.job.seed)
        self.pad_id = self.trainee.tokenizer.pad_token_id
        self.parameters = self.trainee.trainable_parameters()

    def _setup_optimizer(self) -> None:
        """Shard first (FSDP2 replaces the parameters), then build the optimizer over what will be trained."""
        settings = self.settings
        self.compiled = settings.compiles(self.device.type)
        share = self.world == 1 and not self.compiled and not settings.gradient_checkpointing
        model = TrainedTokenLoss(self.trainee.model, share_prefix=share)
        if self.strategy == "fsdp":
            fsdp2_shard(self.trainee.model, root=model)
            self.parameters = self.trainee.trainable_parameters()
        optimizer = torch.optim.AdamW(
            list(self.parameters.values()),
            lr=settings.learning_rate,
            betas=settings.betas,
            weight_decay=settings.weight_decay,
        )
        # Compiled runs train on a few fixed padded shapes (length buckets), so each compiles once.
        self.compiled_shapes: set[tuple] = set()
        self.compile_seconds = 0.0
        if self.compiled:
            model.compile_body()
            self.graphs_before = _compiled_graphs()
        self.shards: Shards | None = None
        if self.strategy == "fsdp":
            self.shards = Fsdp2Shards(self.trainee.model, model, optimizer)
        elif self.strategy is not None:
            # DDP, or a DeepSpeed engine: accelerate prepares model and optimizer together.
            model, optimizer = self.accelerator.prepare(model, optimizer)
            if self.strategy == "deepspeed":
                self.shards = zero.ZeroShards(model, self.parameters, self.accelerator.state.deepspeed_plugin)
        self.model, self.optimizer = model, optimizer

    def _setup_data(self) -> None:
        settings = self.settings
        self.per_epoch = steps_per_epoch(self.job.data, settings.batch_size)
        self.total_steps = settings.max_steps or max(1, math.ceil(settings.epochs * self.per_epoch))
        self.token_cap = settings.token_cap(self.device.type)
        self.orders: dict[int, list] = {}

    def _setup_checkpoints(self) -> None:
        job = self.job
        self.trajectory = _trajectory(job, self.total_steps, self.world)
        if self.world > 1:
            # Every rank must train the same job before any step: same settings, data, model and prompt.
            preflight({key: fingerprint(value) for key, value in self.trajectory.items()})
        job.out_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = job.out_dir / "metrics.jsonl"
        self.fault = fault_from_env()
        self.manager = CheckpointManager(
            job.out_dir / "checkpoints", keep=self.settings.keep_checkpoints, fault_hook=self.fault
        )
        self.state = TrainState()
        self.checkpoint = TrainCheckpoint(
            self.state,
            self.parameters,
            self.optimizer,
            self.trajectory,
            world=self.world,
            rank=self.rank,
            shards=self.shards,
        )
        self.resumed_from: int | None = None

    def _setup_monitoring(self) -> None:
        job, settings = self.job, self.settings
        self.probes = build_probes(job.probes, job.identity) if job.probes is not None else []
        self.eval_every = settings.eval_every_steps or self.per_epoch
        self.probe_every = job.probes.every_steps if job.probes and job.probes.every_steps else self.per_epoch
        from openrecipe.train.flops import measured_peak_flops

        # MFU against the measured matmul peak of the precision actually used (bf16 units or fp32).
        self.peak = measured_peak_flops(self.device, self.trainee.autocast_dtype or torch.float32) * self.world
        self.num_params = sum(zero.parameter_count(p) for p in self.trainee.model.parameters())
        self.probe_log: list[dict[str, Any]] = []
        self.board = tensorboard_writer(job.out_dir / "tensorboard") if settings.tensorboard and self.is_main else None

    # -- resume ---------------------------------------------------------------------------------

    def resume(self) -> None:
        """Continue from the newest complete checkpoint made with the same trajectory (or --force/--extend)."""
        job, console, manager = self.job, self.console, self.manager
        if self.is_main:
            for name in manager.clean_temporary():
                console.print(f"[yellow]removed an interrupted checkpoint write ({name})[/yellow]")
        checkpoint = manager.latest(report=lambda text: console.print(f"[yellow]{text}[/yellow]"))
        if checkpoint is None:
            if self.is_main and self.metrics_path.exists():
                self.metrics_path.unlink()
            return
        changes = _differences(checkpoint.json["trajectory"], self.trajectory)
        # Checkpoints hold full tensors, so another number of processes continues the same run.
        regrouped = [change for change in changes if change.startswith("world_size")]
        changes = [change for change in changes if change not in regrouped]
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
        self.checkpoint.load_state_dict(checkpoint)
        if changes and job.extend:
            self.state.finished, self.state.stop_reason = False, None
        self.resumed_from = checkpoint.step
        if self.is_main:
            _truncate_metrics(self.metrics_path, checkpoint.step)
            console.print(f"[cyan]resuming from checkpoint step {checkpoint.step} of {self.total_steps}[/cyan]")
            if regrouped:
                before = checkpoint.json["trajectory"].get("world_size")
                console.print(f"[cyan]written by {before} processes, continued by {self.world}[/cyan]")

    # -- step -----------------------------------------------------------------------------------

    def loop(self) -> None:
        state = self.state
        self.started = time.perf_counter()
        with (
            Signals() as signals,
            Progress(
                TextColumn("[bold]train[/bold]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}  {task.fields[speed]} tok/s{task.fields[compile]}"),
                TimeRemainingColumn(),
                console=self.console,
                disable=not self.is_main,
                transient=False,
            ) as progress,
        ):
            task = progress.add_task(
                "train", total=self.total_steps, completed=state.step, loss="-", speed="-", compile=""
            )
            while state.step < self.total_steps and not state.finished:
                row = self._step()
                new_best = self._evaluate_and_probe(row)
                if state.step == self.total_steps and not state.finished:
                    state.finish("reached the planned number of steps")
                self._log(row)
                progress.update(
                    task,
                    completed=state.step,
                    loss=f"{row['loss']:.4f}",
                    speed=f"{row['tokens_per_s']:.0f}",
                    compile=_compile_text(row),
                )
                # The best checkpoint (lowest eval loss) is saved when found and kept beside the latest ones.
                if state.finished or new_best or state.step % self.settings.save_every_steps == 0 or signals.received:
                    self._save()
                if signals.received and not state.finished:
                    raise RunInterrupted(
                        f"stopped by signal {signals.received} at step {state.step}; re-run the same command to resume"
                    )
        if self.board is not None:
            self.board.close()

    def _batch(self, step: int) -> list:
        epoch, index = divmod(step, self.per_epoch)
        if epoch not in self.orders:
            self.orders = {epoch: epoch_order(self.job.data, epoch, self.job.seed)}
        size = self.settings.batch_size
        return self.orders[epoch][index * size : (index + 1) * size]

    def _step(self) -> dict[str, Any]:
        """Forward/backward over micro-batches, clip, skip a non-finite update, step; the metrics row."""
        settings, state, world = self.settings, self.state, self.world
        step = state.step
        self.fault(f"step={step}")
        batch_examples = self._batch(step)
        local = batch_examples[self.rank :: world]
        global_tokens = max(1, trainable_tokens(batch_examples))
        step_start = time.perf_counter()
        loss_sum = torch.zeros((), device=self.device)
        # Set before the micro-batches: a DeepSpeed engine steps inside the last one's backward.
        lr = lr_at(step, settings.learning_rate, self.total_steps, settings.schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.compiled:
            chunks = static_micro_batches(local, settings.micro, self.token_cap)
        else:
            chunks = [(chunk, None) for chunk in micro_batches(local, settings.micro, self.token_cap)]
        count = len(chunks)
        if self.shards is not None:
            # Every sharded forward or backward meets all ranks (FSDP gathers, ZeRO reduces): a rank with fewer
            # micro-batches repeats its last one with zero weight, so all ranks make the same collective calls.
            count = most_across_ranks(count)
        for position in range(count):
            chunk, shape = chunks[min(position, len(chunks) - 1)]
            weight = 1.0 if position < len(chunks) else 0.0
            batch = {k: v.to(self.device) for k, v in collate(chunk, self.pad_id, shape).items()}
            compiling = self.compiled and (shape, *sorted(batch)) not in self.compiled_shapes
            compile_start = time.perf_counter()
            last = position == count - 1
            context = nullcontext()
            if self.strategy == "fsdp":
                set_gradient_sync(self.model, last)  # reduce-scatter once, after the last micro-batch
            elif self.strategy == "ddp" and not last:
                context = self.accelerator.no_sync(self.model)
            with context:
                chunk_loss = _token_loss_sum(self.model, batch, self.trainee.autocast()) * weight
                # Every strategy averages gradients over processes: scale so the result is the global token mean.
                self._backward(chunk_loss * world / global_tokens, last)
                self.fault("mid_accumulation")
            if compiling:  # a new shape: its first forward and backward compile (timed with that one pass)
                self.compiled_shapes.add((shape, *sorted(batch)))
                self.compile_seconds += time.perf_counter() - compile_start
            loss_sum += chunk_loss.detach()
        if world > 1:
            torch.distributed.all_reduce(loss_sum)
        loss = float(loss_sum) / global_tokens
        max_norm = settings.max_grad_norm if settings.max_grad_norm is not None else float("inf")
        # DeepSpeed clipped (and skipped a non-finite update) in its step: this reads the norm it measured.
        grad_norm = as_float(self.accelerator.clip_grad_norm_(list(self.parameters.values()), max_norm))
        if math.isfinite(loss) and math.isfinite(grad_norm):
            self.optimizer.step()  # a no-op under DeepSpeed, whose engine stepped at the boundary
            state.consecutive_nonfinite = 0
        else:
            state.nonfinite_steps += 1
            state.consecutive_nonfinite += 1
        self.optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - step_start
        state.train_seconds += seconds  # across resumes
        tokens = sum(len(example["input_ids"]) for example in batch_examples)
        state.tokens_seen += tokens
        state.step = step + 1
        row: dict[str, Any] = {
            "step": step + 1,
            "epoch": round((step + 1) / self.per_epoch, 4),
            "loss": loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1),
            "nonfinite_steps": state.nonfinite_steps,
        }
        if self.peak:
            row["mfu"] = self._mfu(tokens, len(batch_examples), seconds)
        if self.compiled:
            row["compile_graphs"] = _compiled_graphs() - self.graphs_before
            row["compile_s"] = round(self.compile_seconds, 2)
        if state.consecutive_nonfinite >= settings.nonfinite_patience:
            append_row(self.metrics_path, row, self.is_main)
            raise OpenRecipeError(
                f"training diverged: {state.consecutive_nonfinite} consecutive steps had a NaN/inf loss or "
                f"gradient (updates skipped); the last good checkpoint is step "
                f"{max(self.manager.steps(), default=0)}",
                fix="lower learning_rate, keep max_grad_norm set, or check the data",
            )
        return row

    def _backward(self, loss: torch.Tensor, last: bool) -> None:
        """A micro-batch's backward; under DeepSpeed the last of a step is the accumulation boundary, where the
        engine reduces, clips and steps."""
        if self.strategy == "deepspeed":
            self.accelerator.deepspeed_engine_wrapped.backward(loss, sync_gradients=last)
        else:
            self.accelerator.backward(loss)

    def _mfu(self, tokens: int, rows: int, seconds: float) -> float:
        from openrecipe.train.flops import flops_per_token

        config = self.trainee.model.config
        per_token = flops_per_token(
            self.num_params,
            config.num_hidden_layers,
            int(tokens / max(1, rows)),
            config.hidden_size,
            self.settings.method == "full",
        )
        return round(tokens * per_token / seconds / self.peak, 4)

    # -- evaluate and probe ---------------------------------------------------------------------

    def _evaluate_and_probe(self, row: dict[str, Any]) -> bool:
        """Eval loss on schedule (True when it is a new best); probes, which may finish the run."""
        job, state, step = self.job, self.state, self.state.step
        boundary = step % self.per_epoch == 0 or step == self.total_steps
        new_best = False
        if step % self.eval_every == 0 or step == self.total_steps:
            eval_loss = evaluate_loss(
                self.model, job.data.eval, self.pad_id, self.settings.micro, self.device, self.trainee.autocast()
            )
            if eval_loss is not None:
                row["eval_loss"] = eval_loss
                if state.best_eval_loss is None or eval_loss < state.best_eval_loss:
                    state.best_eval_loss, state.best_step = eval_loss, step
                    new_best = True
        if self.probes and (step % self.probe_every == 0 or boundary):
            with self.shards.gathered() if self.shards is not None else nullcontext():
                results = self._run_probes()
            row["probes_passed"] = sum(r.passed for r in results)
            self.probe_log.append({"step": step, "results": [r.__dict__ for r in results]})
            if (
                job.probes.stop_when_passed
                and all(r.passed for r in results)
                and step / self.per_epoch >= job.probes.min_epochs
            ):
                state.finish(f"all {len(results)} probes passed at step {step}")
        return new_best

    def _run_probes(self) -> list:
        job = self.job
        return run_probes(
            self.trainee.model,
            self.trainee.tokenizer,
            self.probes,
            job.system_prompt,
            self.device,
            self.trainee.autocast(),
            job.probes.max_new_tokens,
        )

    def _log(self, row: dict[str, Any]) -> None:
        append_row(self.metrics_path, row, self.is_main)
        if self.board is not None:
            for key in ("loss", "lr", "grad_norm", "tokens_per_s", "eval_loss", "mfu"):
                if key in row:
                    self.board.add_scalar(f"train/{key}", row[key], row["step"])

    # -- save -----------------------------------------------------------------------------------

    def _save(self) -> None:
        tensors, parts = self.checkpoint.state_dict()
        if self.is_main:
            best = self.state.best_step
            self.manager.save(self.state.step, tensors, parts, protect={best} if best else None)
        if self.world > 1:
            torch.distributed.barrier()

    # -- summarize ------------------------------------------------------------------------------

    def summarize(self) -> TrainOutcome:
        job, state = self.job, self.state
        if self.is_main and self.probe_log:
            (job.out_dir / "probes.json").write_text(json.dumps(self.probe_log, ensure_ascii=False, indent=1))
        metrics = {
            "steps": state.step,
            "total_steps": self.total_steps,
            "epochs": round(state.step / self.per_epoch, 3),
            "tokens_seen": state.tokens_seen,
            "nonfinite_steps": state.nonfinite_steps,
            "train_seconds": round(state.train_seconds, 2),
            "wall_seconds": round(time.perf_counter() - self.started, 2),
            "stop_reason": state.stop_reason,
            "resumed_from_step": self.resumed_from,
            "best_eval_loss": state.best_eval_loss,
            "best_step": state.best_step,
        }
        if self.compiled:  # this process's compiles (a resumed run compiles again)
            metrics["compile_graphs"] = _compiled_graphs() - self.graphs_before
            metrics["compile_seconds"] = round(self.compile_seconds, 2)
        metrics.update(_from_metrics_log(self.metrics_path, self.probe_log))
        return TrainOutcome(metrics, {"metrics": str(self.metrics_path)}, self._final_model())

    def _final_model(self) -> TrainModel | None:
        """The trained model on rank 0 for the stage to save; a sharded one is gathered into an unsharded copy
        (collective)."""
        if self.shards is None:
            return self.trainee if self.is_main else None
        trained = self.shards.trainable_state(list(self.parameters))
        if not self.is_main:
            return None
        with self.shards.loading_whole():
            whole = load_for_training(self.job.model, self.settings, self.device, seed=self.job.seed)
        with torch.no_grad():
            for name, parameter in whole.trainable_parameters().items():
                parameter.copy_(trained[name])
        return whole


def _compiled_graphs() -> int:
    """Graphs torch.compile has built in this process (a graph break counts as one more)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _compile_text(row: dict[str, Any]) -> str:
    if "compile_graphs" not in row:
        return ""
    return f"  compiled {row['compile_graphs']} graphs in {row['compile_s']:.0f} s"


def _from_metrics_log(path: Path, probe_log: list[dict[str, Any]]) -> dict[str, Any]:
    """First/final loss and median speed and MFU (the first step warms up and is left out)."""
    if not path.exists():
        return {}
    out: dict[str, Any] = {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    losses = [r["loss"] for r in rows if "loss" in r]
    if losses:
        out.update(first_loss=losses[0], final_loss=losses[-1])
    speeds = [r["tokens_per_s"] for r in rows[1:] if "tokens_per_s" in r]
    if speeds:
        out["tokens_per_s"] = round(sorted(speeds)[len(speeds) // 2], 1)
    mfus = [r["mfu"] for r in rows[1:] if "mfu" in r]
    if mfus:
        out["mfu"] = sorted(mfus)[len(mfus) // 2]
    if probe_log:
        out["probes_passed"] = probe_log[-1]["results"] and sum(r["passed"] for r in probe_log[-1]["results"])
        out["probes_total"] = len(probe_log[-1]["results"])
    return out
