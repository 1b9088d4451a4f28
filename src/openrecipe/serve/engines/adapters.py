"""LoRA adapters served beside one copy of the base weights, for the transformers engine.

Rows of one batch each use their own adapter (or none). For plain LoRA on linear layers the adapters' matrices
are stacked side by side per layer, so one forward adds every row's own update with three small matmuls per
layer, whatever the mix: `(x @ A_all) * row_selector @ B_all`, where the selector zeroes the columns of
other adapters. PEFT's mixed-adapter inference (`adapter_names` on forward) splits the batch per adapter in
every layer instead, which on CPU cost more per decode step than the base model's own matmuls; it stays the
path for what stacking does not cover (DoRA and other variants, LoRA biases, non-linear targets). Loading and
unloading while serving happen on the engine thread between decode steps, never under a running forward; an
unloaded adapter's weights go once its last request ends.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import torch

from openrecipe.errors import OpenRecipeError
from openrecipe.serve.engines.base import Failed, Finished, GenerationRequest

log = logging.getLogger("openrecipe.serve")


class StackedLayer:
    """One LoRA-wrapped linear layer with every adapter's A and B side by side (scaling folded into B).

    PEFT's own LoRA pass in the layer is switched off; a forward hook adds `((x @ A) * selector) @ B`, where
    `selector` (rows, total rank) is 1 on the columns of the row's adapter and 0 elsewhere.
    """

    def __init__(self, module: torch.nn.Module, names: list[str]) -> None:
        present = [name for name in names if name in module.lora_A]
        self.a = torch.cat([module.lora_A[name].weight for name in present]).t().contiguous()  # (in, total rank)
        self.b = torch.cat([module.lora_B[name].weight * module.scaling[name] for name in present], dim=1)
        self.b = self.b.t().contiguous()  # (total rank, out)
        ranks = [module.lora_A[name].weight.shape[0] for name in present]
        self.signature = tuple((names.index(name), rank) for name, rank in zip(present, ranks, strict=True))
        self.columns = torch.cat(  # which adapter (index into `names`) each rank column belongs to
            [torch.full((rank,), names.index(name)) for name, rank in zip(present, ranks, strict=True)]
        ).to(self.a.device)
        self.selector: torch.Tensor | None = None
        module.enable_adapters(False)
        self.handle = module.register_forward_hook(self._add_updates)

    def selector_for(self, rows: torch.Tensor | None) -> torch.Tensor | None:
        """`rows`: each row's adapter as an index into the set's names, -1 for the base model; None: all base."""
        if rows is None:
            return None
        selector = rows.to(self.columns.device)[:, None] == self.columns[None, :]
        return selector.to(self.a.dtype) if bool(selector.any()) else None

    def _add_updates(self, module, args, output):
        if self.selector is None:
            return None
        x = args[0].to(self.a.dtype)
        selector = self.selector.view(x.shape[0], *([1] * (x.dim() - 2)), -1)
        return output + ((x @ self.a) * selector @ self.b).to(output.dtype)

    def remove(self, module: torch.nn.Module) -> None:
        self.handle.remove()
        module.enable_adapters(True)


def _stackable(module: torch.nn.Module) -> bool:
    """Plain LoRA on a linear layer: no DoRA or other variant, no LoRA bias, not merged into the base."""
    from peft.tuners.lora.layer import Linear

    return (
        type(module) is Linear
        and not module.lora_variant
        and not any(module.lora_bias.values())
        and not module.merged
        and isinstance(module.get_base_layer(), torch.nn.Linear)
    )


class AdapterSet:
    def __init__(self, base_model, adapters: dict[str, str] | None) -> None:
        self.names: list[str] = []
        self.model = base_model
        self._peft = False
        self._controls: queue.Queue[tuple[Callable[[], Any], concurrent.futures.Future]] = queue.Queue()
        self._retiring: set[str] = set()  # unloaded names whose running requests still finish
        self._users: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._stacked: dict[torch.nn.Module, StackedLayer] | None = None  # None: PEFT's `adapter_names` path
        self._stacked_names: list[str] = []
        for name, path in (adapters or {}).items():
            self._load(name, path)
        self._restack()

    def _restack(self) -> None:
        """Stack the loaded adapters' matrices per layer, or fall back to PEFT when a layer cannot be stacked."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        for module, layer in (self._stacked or {}).items():
            layer.remove(module)
        self._stacked = None
        if not self._peft:
            return
        names = list(dict.fromkeys([*self.names, *sorted(self._retiring)]))
        layers = [module for module in self.model.modules() if isinstance(module, BaseTunerLayer)]
        if not all(_stackable(module) for module in layers):
            return
        stacked: dict[torch.nn.Module, StackedLayer] = {}
        try:
            with torch.no_grad():
                for module in (m for m in layers if any(name in m.lora_A for name in names)):
                    stacked[module] = StackedLayer(module, names)
        except Exception:  # PEFT's own path still serves every adapter, only slower
            log.exception("could not stack the LoRA adapters; using PEFT's mixed-adapter batches")
            for module, layer in stacked.items():
                layer.remove(module)
            return
        self._stacked, self._stacked_names = stacked, names

    def forward(self, requests: list[GenerationRequest], **inputs: Any) -> Any:
        """Run the model with each row (one per request, in order) using its request's adapter."""
        arguments = self.forward_arguments(requests)
        if self._peft and (self._stacked is not None or not self.model.peft_config):
            return self.model.get_base_model()(**inputs)  # LoRA layers sit in it; stacked ones add their updates
        return self.model(**inputs, **arguments)

    def _load(self, name: str, path: str) -> None:
        from peft import PeftModel

        try:
            if not self._peft:
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name)
                self.model.eval()
                self._peft = True
            else:
                self.model.load_adapter(path, adapter_name=name)
        except (OSError, ValueError) as error:
            raise OpenRecipeError(
                f"cannot load adapter {name!r} from {path}: {error}", fix="pass a PEFT adapter folder"
            ) from None
        self.names.append(name)

    def forward_arguments(self, requests: list[GenerationRequest]) -> dict[str, Any]:
        """Which adapter each row of a forward uses: set on the stacked layers, or PEFT's `adapter_names`."""
        if not self._peft:
            return {}
        if self._stacked is None:
            return {"adapter_names": [request.adapter or "__base__" for request in requests]}
        rows = None
        if any(request.adapter is not None for request in requests):
            index = {name: position for position, name in enumerate(self._stacked_names)}
            rows = torch.tensor([index[r.adapter] if r.adapter is not None else -1 for r in requests])
        selectors: dict[tuple, torch.Tensor | None] = {}  # layers with the same adapters and ranks share one
        for layer in self._stacked.values():
            if layer.signature not in selectors:
                selectors[layer.signature] = layer.selector_for(rows)
            layer.selector = selectors[layer.signature]
        return {}

    def track(self, request: GenerationRequest) -> None:
        """Count the request as a user of its adapter until it finishes or fails."""
        if request.adapter is None:
            return
        name, emit = request.adapter, request.emit
        with self._lock:
            self._users[name] += 1

        def emit_and_release(event) -> None:
            if isinstance(event, Finished | Failed):
                with self._lock:
                    self._users[name] -= 1
            emit(event)

        request.emit = emit_and_release

    def load(self, name: str, path: str, taken: set[str]) -> concurrent.futures.Future:
        if name in taken or name in self.names or name in self._retiring:
            raise ValueError(f"model name {name!r} is already served")
        if not self._peft:
            raise ValueError("this server was started without adapters; start it with --adapter to add more")
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._controls.put((lambda: self._load(name, path), future))
        return future

    def unload(self, name: str) -> None:
        """New requests for `name` are refused at once; its weights go when its running requests end."""
        if name not in self.names:
            raise KeyError(name)
        self._retiring.add(name)  # before leaving `names`: a restack in between still stacks it
        self.names.remove(name)

    def apply_pending(self) -> bool:
        """Run on the engine thread between steps: queued loads, then deletion of idle unloaded adapters.

        Returns whether the set of adapter weights changed.
        """
        changed = False
        while True:
            try:
                action, future = self._controls.get_nowait()
            except queue.Empty:
                break
            changed = True
            try:
                future.set_result(action())
            except Exception as error:
                future.set_exception(error)
        with self._lock:
            idle = [name for name in self._retiring if self._users[name] <= 0]
        for name in idle:
            self.model.delete_adapter(name)
            self._retiring.discard(name)
        remaining = list(self.model.peft_config) if self._peft else []
        if remaining and self.model.active_adapter not in remaining:  # PeftModel keeps a deleted first adapter
            self.model.set_adapter(remaining[0])
        if changed or idle:
            self._restack()
        return changed or bool(idle)
