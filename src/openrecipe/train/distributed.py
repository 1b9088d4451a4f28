"""Training on several processes or machines: the strategy, FSDP2 sharding, full-state checkpoints, a
pre-flight check.

DDP and DeepSpeed (`zero.py`) run through accelerate (`prepare` wraps the model and optimizer together). On CPU
accelerate routes every multi-process run to DDP and ignores an FSDP plugin (`DistributedType.MULTI_CPU`), so
FSDP2 is applied with torch's own `fully_shard`, the call accelerate's FSDP2 path makes, on every device. A
sharded run's checkpoint is gathered with `torch.distributed.checkpoint.state_dict` into full tensors on rank 0
(trainable parameters only: a LoRA checkpoint holds the adapter, not the base) and written in the single-process
format, so a run can resume on a different number of processes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from openrecipe.errors import OpenRecipeError
from openrecipe.train.config import DistributedSettings

PREFLIGHT_TIMEOUT = timedelta(seconds=30)


def launched_strategy(environ: Mapping[str, str]) -> str | None:
    """The strategy an accelerate config launched with (`accelerate launch` exports it), if any."""
    for variable, strategy in (("ACCELERATE_USE_DEEPSPEED", "deepspeed"), ("ACCELERATE_USE_FSDP", "fsdp")):
        if environ.get(variable, "").lower() == "true":
            return strategy
    return None


def check_strategy(distributed: DistributedSettings, environ: Mapping[str, str]) -> None:
    """Refuse a strategy this machine cannot run, or one that contradicts the accelerate config, before any work."""
    launched = launched_strategy(environ)
    if launched is not None and launched != distributed.strategy:
        raise OpenRecipeError(
            f"the accelerate config launches {launched.upper()}, but train.distributed.strategy is "
            f"{distributed.strategy}",
            fix=f"set train.distributed.strategy: {launched} in the recipe, or launch without that accelerate config",
        )
    if distributed.strategy == "deepspeed":
        from openrecipe.train.zero import check_launch_stage, require_deepspeed

        require_deepspeed()
        check_launch_stage(distributed, environ)


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks transformers marks as unsplittable: the natural FSDP units."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    return [module for module in model.modules() if type(module).__name__ in names]


def fsdp2_shard(model: torch.nn.Module, root: torch.nn.Module | None = None) -> torch.nn.Module:
    """Shard every decoder layer of `model`, then the rest under `root` (the module whose forward the loop calls,
    so embeddings and head gather there), over all processes: FSDP2 on one flat mesh. Call before building the
    optimizer: sharding replaces the parameters."""
    from torch.distributed.fsdp import fully_shard

    layers = decoder_layers(model)
    if not layers:
        raise OpenRecipeError(
            f"FSDP2 found no decoder layers to shard in {type(model).__name__}",
            fix="use train.distributed.strategy: ddp for this model",
        )
    for layer in layers:
        fully_shard(layer)
    return fully_shard(root if root is not None else model)


def most_across_ranks(count: int) -> int:
    """The largest `count` any rank holds (collective)."""
    value = torch.tensor([count])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return int(value)


def set_gradient_sync(model: torch.nn.Module, enabled: bool) -> None:
    """FSDP2's accumulation switch: skip the reduce-scatter on all but the last micro-batch."""
    setter = getattr(model, "set_requires_gradient_sync", None)
    if setter is not None:
        setter(enabled)


@contextmanager
def unsharded_root(model: torch.nn.Module) -> Iterator[None]:
    """The root's own (unsharded-unit) parameters gathered, for code that calls submodules directly (generation);
    each decoder layer still gathers itself in its forward."""
    unshard = getattr(model, "unshard", None)
    if unshard is None:
        yield
        return
    unshard()
    try:
        yield
    finally:
        model.reshard()


def as_float(value: torch.Tensor | float) -> float:
    """A gradient norm as a number: a DTensor's whole value (a collective: every rank calls it)."""
    full = getattr(value, "full_tensor", None)
    return float(full() if full is not None else value)


def _options(**extra: bool):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, ignore_frozen_params=True, **extra)


def full_trainable_state(model: torch.nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    """The trainable parameters `names` as full CPU tensors on rank 0 (empty elsewhere), named as in one process
    (collective). Filtered by name: DCP keeps a tied copy of a frozen embedding as the head's weight."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(model, options=_options(cpu_offload=True))
    return {name: state[name] for name in names if name in state}


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, names: list[str]) -> dict[str, Any]:
    """The optimizer state as full tensors on rank 0 (empty elsewhere), keyed by parameter position like a
    single-process `optimizer.state_dict()` (collective)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state = get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))
    if not state or not state.get("param_groups"):
        return {"state": {}, "param_groups": []}
    position = {name: index for index, name in enumerate(names)}
    return {
        "state": {position[name]: values for name, values in state["state"].items()},
        "param_groups": [
            {**group, "params": [position[n] for n in group["params"]]} for group in state["param_groups"]
        ],
    }


def load_full_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    names: list[str],
    trainable: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
) -> None:
    """Load a single-process checkpoint into a sharded model and optimizer: each rank keeps its own shards
    (collective)."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    set_model_state_dict(model, {name: trainable[name] for name in names}, options=_options(strict=False))
    by_name = {
        "state": {names[int(index)]: values for index, values in optimizer_state["state"].items()},
        "param_groups": [
            {**group, "params": [names[int(i)] for i in group["params"]]} for group in optimizer_state["param_groups"]
        ],
    }
    set_optimizer_state_dict(model, optimizer, by_name, options=_options(strict=False))


class Fsdp2Shards:
    """The trainable parameters of an FSDP2-sharded model, read and written whole (collectives), with the same
    methods as `zero.ZeroShards`."""

    def __init__(self, model: torch.nn.Module, root: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.model, self.root, self.optimizer = model, root, optimizer

    def trainable_state(self, names: list[str]) -> dict[str, torch.Tensor]:
        return full_trainable_state(self.model, names)

    def optimizer_state(self, names: list[str]) -> dict[str, Any]:
        return full_optimizer_state(self.model, self.optimizer, names)

    def load(self, names: list[str], trainable: dict[str, torch.Tensor], optimizer_state: dict[str, Any]) -> None:
        load_full_state(self.model, self.optimizer, names, trainable, optimizer_state)

    def gathered(self):
        """The root's own parameters gathered, for generation (each layer gathers itself)."""
        return unsharded_root(self.root)

    def loading_whole(self):
        return nullcontext()


def fingerprint(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


_PREFLIGHTS = [0]  # every rank runs the same checks in the same order, so a counter keys each one


def preflight(facts: dict[str, str], *, timeout: timedelta = PREFLIGHT_TIMEOUT) -> None:
    """Every rank must see the same recipe, data and model before any training step.

    Exchanged through the rendezvous store with a short timeout (not a collective, which would wait for the
    process group's long timeout), so a rank that never arrives fails the check instead of hanging the job;
    a difference names the rank and what differs.
    """
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return
    store = dist.distributed_c10d._get_default_store()  # the store every rank already rendezvoused through
    _PREFLIGHTS[0] += 1
    keys = [f"openrecipe/preflight/{_PREFLIGHTS[0]}/{rank}" for rank in range(dist.get_world_size())]
    store.set(keys[dist.get_rank()], json.dumps(facts, sort_keys=True))
    try:
        store.wait(keys, timeout)
    except (RuntimeError, dist.DistError):
        missing = [rank for rank, key in enumerate(keys) if not store.check([key])]
        raise OpenRecipeError(
            f"pre-flight: rank(s) {', '.join(map(str, missing))} did not answer within "
            f"{int(timeout.total_seconds())} s",
            fix="check that every machine started the same command and can reach the rendezvous address",
        ) from None
    problems = list(_differences(json.loads(store.get(key)) for key in keys))
    if problems:
        raise OpenRecipeError(
            "pre-flight: the processes do not run the same job: " + "; ".join(problems),
            fix="give every machine the same recipe, data and model files (compare their SHA-256)",
        )


def _differences(gathered: Iterable[dict[str, str] | None]) -> Iterable[str]:
    ranks = list(gathered)
    reference = ranks[0] or {}
    for rank, facts in enumerate(ranks[1:], start=1):
        facts = facts or {}
        for key in sorted(set(reference) | set(facts)):
            if reference.get(key) != facts.get(key):
                yield f"rank {rank} has {key} {facts.get(key)!r}, rank 0 has {reference.get(key)!r}"
