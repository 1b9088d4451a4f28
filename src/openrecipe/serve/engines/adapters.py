"""LoRA adapters served beside one copy of the base weights, for the transformers engine.

PEFT's mixed-adapter inference (`adapter_names` on forward) lets rows of one batch each use their own
adapter (`__base__` for none). Loading and unloading while serving happen on the engine thread between
decode steps, never under a running forward; an unloaded adapter's weights go once its last request ends.
"""

from __future__ import annotations

import collections
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any

from openrecipe.errors import OpenRecipeError
from openrecipe.serve.engines.base import Failed, Finished, GenerationRequest


class AdapterSet:
    def __init__(self, base_model, adapters: dict[str, str] | None) -> None:
        self.names: list[str] = []
        self.model = base_model
        self._peft = False
        self._controls: queue.Queue[tuple[Callable[[], Any], concurrent.futures.Future]] = queue.Queue()
        self._retiring: set[str] = set()  # unloaded names whose running requests still finish
        self._users: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        for name, path in (adapters or {}).items():
            self._load(name, path)

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
        """Which adapter each row of a forward uses (nothing to pass when the model has none)."""
        if not self._peft:
            return {}
        return {"adapter_names": [request.adapter or "__base__" for request in requests]}

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
        self.names.remove(name)
        self._retiring.add(name)

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
        return changed or bool(idle)
