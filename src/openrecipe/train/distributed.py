"""Training on several processes or machines: FSDP2 sharding, full-state checkpoints, a pre-flight check.

accelerate runs DDP for us; on CPU it routes every multi-process run to DDP and ignores an FSDP plugin
(`DistributedType.MULTI_CPU`), so FSDP2 is applied with torch's own `fully_shard`, the call accelerate's FSDP2
path makes on GPUs. Checkpoints gather the full trainable state on every rank and rank 0 writes it in the
single-process format, so a run can resume on a different number of processes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from openrecipe.errors import OpenRecipeError

PREFLIGHT_TIMEOUT = timedelta(seconds=30)


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks transformers marks as unsplittable: the natural FSDP units."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    return [module for module in model.modules() if type(module).__name__ in names]


def fsdp2_shard(model: torch.nn.Module) -> torch.nn.Module:
    """Shard every decoder layer, then the rest, over all processes (FSDP2, one flat mesh)."""
    from torch.distributed.fsdp import fully_shard

    layers = decoder_layers(model)
    if not layers:
        raise OpenRecipeError(
            f"FSDP2 found no decoder layers to shard in {type(model).__name__}",
            fix="use train.distributed: ddp for this model",
        )
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    return model


def set_gradient_sync(model: torch.nn.Module, enabled: bool) -> None:
    """FSDP2's accumulation switch: skip the reduce-scatter on all but the last micro-batch."""
    setter = getattr(model, "set_requires_gradient_sync", None)
    if setter is not None:
        setter(enabled)


def full_tensor(value: torch.Tensor) -> torch.Tensor:
    """A DTensor's whole value (a collective: every rank must call it), or the tensor itself."""
    gather = getattr(value, "full_tensor", None)
    return gather() if gather is not None else value


def gather_trainable(named: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    """Full copies of the trainable parameters, in the single-process layout (collective)."""
    return {name: full_tensor(parameter.detach()).cpu() for name, parameter in named.items()}


def gather_optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state_dict with every sharded tensor gathered whole (collective)."""
    state = optimizer.state_dict()
    gathered = {
        index: {
            key: full_tensor(value).cpu() if isinstance(value, torch.Tensor) and value.dim() > 0 else value
            for key, value in values.items()
        }
        for index, values in state["state"].items()
    }
    return {"state": gathered, "param_groups": state["param_groups"]}


def load_trainable(named: dict[str, torch.nn.Parameter], tensors: dict[str, torch.Tensor]) -> None:
    """Copy full tensors into (possibly sharded) parameters: each rank keeps its own shard."""
    with torch.no_grad():
        for name, parameter in named.items():
            parameter.copy_(_like(parameter, tensors[name]))


def shard_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> dict[str, Any]:
    """Turn a full (single-process) optimizer state into this rank's shards, matching each parameter."""
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    sharded = {}
    for index, values in state["state"].items():
        parameter = parameters[int(index)]
        sharded[index] = {
            key: _like(parameter, value) if isinstance(value, torch.Tensor) and value.dim() > 0 else value
            for key, value in values.items()
        }
    return {"state": sharded, "param_groups": state["param_groups"]}


def _like(parameter: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """`full` laid out like `parameter`: sharded the same way when it is a DTensor."""
    mesh = getattr(parameter, "device_mesh", None)
    if mesh is None:
        return full.to(device=parameter.device, dtype=parameter.dtype)
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full.to(dtype=parameter.dtype), mesh, parameter.placements)


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
