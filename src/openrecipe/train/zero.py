"""DeepSpeed ZeRO through accelerate: the engine accelerate builds from a plugin, its accumulation boundary, and
checkpoints gathered whole.

accelerate prepares the model and optimizer together into a DeepSpeed engine (stage 2 shards gradients and
optimizer state, stage 3 the parameters too). The loop marks the last micro-batch of a step as the accumulation
boundary, where the engine reduces, clips, skips a non-finite update and steps the optimizer. A checkpoint is
gathered with DeepSpeed's tensor-fragment API (`safe_get_full_fp32_param`, `safe_get_full_optimizer_state`) into
the single-process layout and written in our format, so it resumes on any number of processes, one included.

On CPU, accelerate routes `cpu=True` to DDP; built with `cpu=False` it runs DeepSpeed's CPU accelerator over gloo,
with its own process count left at 1, so the loop reads ranks from torch.distributed.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist

from openrecipe.errors import OpenRecipeError
from openrecipe.train.config import DistributedSettings


def require_deepspeed() -> None:
    """Stop before any work when the deepspeed package is missing."""
    if importlib.util.find_spec("deepspeed") is None:
        raise OpenRecipeError(
            "train.distributed.strategy: deepspeed needs the deepspeed package, which is not installed",
            fix="pip install --no-build-isolation deepspeed (it builds against the installed torch), "
            "or use strategy: fsdp (FSDP2 shards like ZeRO-3)",
        )


def check_launch_stage(distributed: DistributedSettings, environ: Mapping[str, str]) -> None:
    """An accelerate config that asks for another ZeRO stage than the recipe is refused, not overridden."""
    launched = environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    if launched and launched.isdigit() and int(launched) != distributed.stage:
        raise OpenRecipeError(
            f"the accelerate config launches DeepSpeed ZeRO stage {launched}, but the recipe's "
            f"train.distributed.zero_stage is {distributed.stage}",
            fix=f"set train.distributed.zero_stage: {launched} in the recipe, or launch with zero_stage "
            f"{distributed.stage}",
        )


def plugin(distributed: DistributedSettings, max_grad_norm: float | None):
    """The DeepSpeed config accelerate prepares the engine with. The loop batches and accumulates itself, so the
    engine sees one micro-batch per boundary the loop marks; precision stays with the loop's autocast."""
    from accelerate.utils import DeepSpeedPlugin

    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)  # its per-step INFO lines would flood the progress bar
    config = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": max_grad_norm or 0.0,
        "zero_optimization": {"stage": distributed.stage},
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    return DeepSpeedPlugin(hf_ds_config=config)


class ZeroShards:
    """The trainable parameters of a DeepSpeed engine, read and written whole (collectives: every rank calls each
    method in the same order)."""

    def __init__(self, engine: Any, parameters: dict[str, torch.nn.Parameter], plugin: Any) -> None:
        self.engine, self.parameters, self.plugin = engine, parameters, plugin

    @property
    def _inner(self) -> torch.optim.Optimizer:
        """The torch optimizer ZeRO runs on its flat fp32 partitions."""
        return self.engine.optimizer.optimizer

    def _flat_partitions(self) -> list[torch.Tensor]:
        """This rank's flat fp32 partitions, the tensors the torch optimizer steps (named per stage by DeepSpeed)."""
        optimizer = self.engine.optimizer
        flats = getattr(optimizer, "single_partition_of_fp32_groups", None)  # stages 1 and 2
        return list(flats if flats is not None else optimizer.fp32_partitioned_groups_flat)  # stage 3

    def trainable_state(self, names: list[str]) -> dict[str, torch.Tensor]:
        """Full fp32 tensors on rank 0 (empty elsewhere), named as in one process."""
        from deepspeed.utils import safe_get_full_fp32_param

        full = {}
        for name in names:
            parameter = self.parameters[name]
            full[name] = safe_get_full_fp32_param(parameter).detach().cpu().reshape(parameter_shape(parameter))
        return full if dist.get_rank() == 0 else {}

    def optimizer_state(self, names: list[str]) -> dict[str, Any]:
        """The optimizer state keyed by parameter position like a single-process `optimizer.state_dict()` (rank 0;
        empty elsewhere). Per-element tensors come from the fragments; a scalar (Adam's step) is the partitions'."""
        from deepspeed.utils import safe_get_full_optimizer_state

        inner = self._inner
        sample = next((state for state in inner.state.values() if state), None)
        entries: dict[int, dict[str, Any]] = {}
        if sample is not None:
            for index, name in enumerate(names):
                parameter, entry = self.parameters[name], {}
                for key, value in sample.items():
                    if value.dim() == 0:
                        entry[key] = value.clone()
                    else:
                        full = safe_get_full_optimizer_state(parameter, key).detach().cpu()
                        entry[key] = full.reshape(parameter_shape(parameter))
                entries[index] = entry
        hyper = {key: value for key, value in inner.param_groups[0].items() if key != "params"}
        state = {"state": entries, "param_groups": [{**hyper, "params": list(range(len(names)))}]}
        return state if dist.get_rank() == 0 else {"state": {}, "param_groups": []}

    def load(self, names: list[str], trainable: dict[str, torch.Tensor], optimizer_state: dict[str, Any]) -> None:
        """Load a single-process checkpoint: the model's own weights, the engine's fp32 copy from them, then the
        optimizer state into each rank's partitions."""
        import deepspeed
        from deepspeed.utils import safe_set_full_optimizer_state

        parameters = [self.parameters[name] for name in names]
        with deepspeed.zero.GatheredParameters(parameters, modifier_rank=0), torch.no_grad():
            for name, parameter in zip(names, parameters, strict=True):
                parameter.copy_(trainable[name].to(parameter.dtype))
        self.engine.optimizer.refresh_fp32_params()
        entries = optimizer_state.get("state") or {}
        if not entries:
            return
        sample = next(iter(entries.values()))
        inner = self._inner
        for flat in self._flat_partitions():  # Adam creates its state lazily, at the first step
            state = inner.state[flat]
            for key, value in sample.items():
                state[key] = value.clone() if value.dim() == 0 else state.get(key, torch.zeros_like(flat))
        link = getattr(self.engine.optimizer, "_lazy_init_hp_params_optimizer_state", None)
        if link is not None:  # ZeRO-2 links each parameter's fragments to the state at its first step: now
            link()
        for index, parameter in enumerate(parameters):
            for key, value in entries[index].items():
                if value.dim():
                    safe_set_full_optimizer_state(parameter, value.to(torch.float32), key)

    @contextmanager
    def gathered(self) -> Iterator[None]:
        """Whole parameters on every rank, for code that calls the model outside the engine (generation); a no-op
        below stage 3."""
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(self.engine.module.parameters())):
            yield

    @contextmanager
    def loading_whole(self) -> Iterator[None]:
        """transformers loads a model partitioned (`zero.Init`, a collective) while a ZeRO-3 config is registered;
        rank 0 alone loading a whole copy to save must not."""
        from transformers.integrations import set_hf_deepspeed_config, unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
        try:
            yield
        finally:
            if getattr(self.plugin, "dschf", None) is not None:
                set_hf_deepspeed_config(self.plugin.dschf)


def parameter_shape(parameter: torch.nn.Parameter) -> torch.Size:
    """A parameter's full shape: ZeRO-3 leaves an empty tensor in the module and records the shape beside it."""
    return getattr(parameter, "ds_shape", parameter.shape)


def parameter_count(parameter: torch.nn.Parameter) -> int:
    return getattr(parameter, "ds_numel", parameter.numel())
