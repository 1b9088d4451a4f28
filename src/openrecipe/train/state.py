"""What a training checkpoint holds, owned by objects with `state_dict()` / `load_state_dict()` (as
torchtitan hands its `Stateful` parts to its CheckpointManager): the counters of the run, the trainable
weights, the optimizer and every process's RNG."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch

from openrecipe.checkpoint.manager import LoadedCheckpoint
from openrecipe.checkpoint.tensors import (
    optimizer_from_tensors,
    optimizer_state_from_tensors,
    optimizer_state_to_tensors,
    rng_from_tensors,
    rng_to_tensors,
)
from openrecipe.errors import OpenRecipeError


class Shards(Protocol):
    """Trainable parameters split over processes, read and written whole (`distributed.Fsdp2Shards`,
    `zero.ZeroShards`)."""

    def trainable_state(self, names: list[str]) -> dict[str, torch.Tensor]: ...

    def optimizer_state(self, names: list[str]) -> dict[str, Any]: ...

    def load(self, names: list[str], trainable: dict[str, torch.Tensor], optimizer_state: dict[str, Any]) -> None: ...

    def gathered(self) -> AbstractContextManager[None]:
        """Whole parameters for code that calls the model outside the wrapper (generation)."""

    def loading_whole(self) -> AbstractContextManager[None]:
        """A context in which one rank may load a whole copy of the model."""


@dataclass
class TrainState:
    """Counters that make a run resumable; `train_seconds` adds up across resumes."""

    step: int = 0
    tokens_seen: int = 0
    nonfinite_steps: int = 0
    consecutive_nonfinite: int = 0
    best_eval_loss: float | None = None
    best_step: int | None = None
    finished: bool = False
    stop_reason: str | None = None
    train_seconds: float = 0.0

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if key in self.__dataclass_fields__:
                setattr(self, key, value)

    def finish(self, reason: str) -> None:
        self.finished, self.stop_reason = True, reason


class TrainCheckpoint:
    """Everything one checkpoint holds, as (tensors, JSON parts) for the CheckpointManager. With `shards` (an
    FSDP2-sharded model or a DeepSpeed ZeRO engine) the weights and optimizer state are gathered whole on rank 0
    and written in the single-process layout, so any number of processes can resume them."""

    def __init__(
        self,
        state: TrainState,
        parameters: dict[str, torch.nn.Parameter],
        optimizer: torch.optim.Optimizer,
        trajectory: dict[str, Any],
        *,
        world: int,
        rank: int,
        shards: Shards | None = None,
    ) -> None:
        self.state, self.parameters, self.optimizer = state, parameters, optimizer
        self.trajectory, self.world, self.rank, self.shards = trajectory, world, rank, shards

    def state_dict(self) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
        """Collective when distributed: every process's RNG is gathered so a resumed run continues each
        stream exactly."""
        if self.shards is not None:
            trainable = self.shards.trainable_state(list(self.parameters))
            optimizer_state = self.shards.optimizer_state(list(self.parameters))
        else:
            trainable = {name: p.detach().cpu() for name, p in self.parameters.items()}
            optimizer_state = self.optimizer.state_dict()
        tensors: dict[str, dict[str, torch.Tensor]] = {"trainable": trainable}
        optimizer_tensors, optimizer_meta = optimizer_state_to_tensors(optimizer_state)
        tensors["optimizer"] = optimizer_tensors
        rng_tensors, rng_meta = rng_to_tensors()
        gathered = [(rng_tensors, rng_meta)]
        if self.world > 1:
            import torch.distributed as dist

            gathered = [None] * self.world  # type: ignore[list-item]
            dist.all_gather_object(gathered, ({k: v.tolist() for k, v in rng_tensors.items()}, rng_meta))
            gathered = [({k: torch.tensor(v, dtype=torch.uint8) for k, v in t.items()}, m) for t, m in gathered]
        parts = {"trajectory": self.trajectory, "train_state": self.state.state_dict(), "optimizer": optimizer_meta}
        for index, (rng_tensor, meta) in enumerate(gathered):
            tensors[f"rng_rank{index}"] = rng_tensor
            parts[f"rng_rank{index}"] = meta
        return tensors, parts

    def load_state_dict(self, checkpoint: LoadedCheckpoint) -> None:
        self.state.load_state_dict(checkpoint.json["train_state"])
        params = checkpoint.tensors["trainable"]
        missing = set(self.parameters) - set(params)
        if missing:
            raise OpenRecipeError(
                f"checkpoint {checkpoint.path.name} lacks weights for {sorted(missing)[0]}",
                fix="it belongs to another model; use a new run folder",
            )
        if self.shards is not None:
            optimizer_state = optimizer_state_from_tensors(
                checkpoint.tensors["optimizer"], checkpoint.json["optimizer"]
            )
            self.shards.load(list(self.parameters), params, optimizer_state)
        else:
            with torch.no_grad():
                for name, parameter in self.parameters.items():
                    parameter.copy_(params[name].to(parameter.dtype))
            optimizer_from_tensors(self.optimizer, checkpoint.tensors["optimizer"], checkpoint.json["optimizer"])
        rng_key = f"rng_rank{self.rank}"
        if rng_key in checkpoint.tensors:
            rng_from_tensors(checkpoint.tensors[rng_key], checkpoint.json[rng_key])
