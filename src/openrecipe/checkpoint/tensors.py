"""Optimizer and RNG state as safetensors + JSON, so loading never needs to unpickle anything."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    return optimizer_state_to_tensors(optimizer.state_dict())


def optimizer_state_to_tensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer `state_dict()` (per-parameter state keyed by position) as tensors + JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    optimizer.load_state_dict(optimizer_state_from_tensors(tensors, meta))


def optimizer_state_from_tensors(tensors: dict[str, torch.Tensor], meta: dict) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = meta["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": groups}


def rng_to_tensors() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, value in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{index}"] = value
    version, keys, gauss = random.getstate()[0], random.getstate()[1], random.getstate()[2]
    numpy_state = np.random.get_state()
    meta = {
        "python": {"version": version, "keys": list(keys), "gauss": gauss},
        "numpy": {
            "keys": numpy_state[1].tolist(),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
    }
    return tensors, meta


def rng_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[key] for key in sorted(k for k in tensors if k.startswith("torch_cuda_"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    python = meta["python"]
    random.setstate((python["version"], tuple(python["keys"]), python["gauss"]))
    numpy_meta = meta["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np.array(numpy_meta["keys"], dtype=np.uint32),
            numpy_meta["pos"],
            numpy_meta["has_gauss"],
            numpy_meta["cached_gaussian"],
        )
    )
