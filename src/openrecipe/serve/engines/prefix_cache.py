"""Keys and values of prompt prefixes that requests share, for the transformers engine.

Chat requests to one server mostly begin with the same tokens (the template's system turn and the start of the
user turn). Their keys and values do not depend on what follows, so a prefill can start from a stored copy and
run the model only over each request's own tokens. A prefix is learned the second time it is seen (the longest
common start of two prompts with the same adapter); entries are evicted least recently used first, within a
budget of cached tokens. The cache keys on the adapter as well, since a LoRA on the key/value projections changes
the keys and values; a batch mixing adapters takes each row's start from its own adapter's entry. The engine
prefills the requests that arrive together in groups of equal stored start, so a request whose start is not
stored yet (a new adapter's first burst) does not take the cache away from the others.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import torch

Layers = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: (keys, values), each (1, heads, length, head_dim)


@dataclass(frozen=True)
class Prompt:
    adapter: str | None
    ids: tuple[int, ...]


def common_length(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    size = min(len(a), len(b))
    for index in range(size):
        if a[index] != b[index]:
            return index
    return size


class PrefixCache:
    def __init__(self, *, max_tokens: int = 2048, min_tokens: int = 8, remembered_prompts: int = 32) -> None:
        self.max_tokens, self.min_tokens = max_tokens, min_tokens
        self._entries: collections.OrderedDict[Prompt, Layers] = collections.OrderedDict()
        self._recent: collections.deque[Prompt] = collections.deque(maxlen=remembered_prompts)
        self.hit_tokens = 0  # prompt tokens whose keys and values came from the cache

    def clear(self) -> None:
        """Forget everything (an adapter was loaded or unloaded: a name may now mean other weights)."""
        self._entries.clear()
        self._recent.clear()

    def shared_length(self, prompts: list[Prompt]) -> int:
        """The longest length at which every prompt has a stored start and tokens beyond it (0: none)."""
        for size in sorted({len(key.ids) for key in self._entries}, reverse=True):
            if all(len(p.ids) > size and Prompt(p.adapter, p.ids[:size]) in self._entries for p in prompts):
                return size
        return 0

    def longest(self, prompts: list[Prompt]) -> tuple[int, Layers] | None:
        """`shared_length` and the batch's keys/values up to it (rows in prompt order; rows may come from
        different adapters' entries), or None when nothing is shared."""
        size = self.shared_length(prompts)
        if not size:
            return None
        keys = [Prompt(p.adapter, p.ids[:size]) for p in prompts]
        for key in keys:
            self._entries.move_to_end(key)
        self.hit_tokens += size * len(prompts)
        rows = [self._entries[key] for key in keys]
        return size, [
            (torch.cat([row[layer][0] for row in rows]), torch.cat([row[layer][1] for row in rows]))
            for layer in range(len(rows[0]))
        ]

    def learn(self, prompts: list[Prompt], layers: list[tuple[torch.Tensor, torch.Tensor]], attention: torch.Tensor):
        """After a prefill: store the longest start each prompt shares with another recent one.

        `layers` are the batch's keys/values (batch, heads, positions, head_dim) and `attention` marks which
        positions of each row hold its prompt's tokens (the rest are padding).
        """
        for row, prompt in enumerate(prompts):
            others = [p for p in self._recent if p.adapter == prompt.adapter]
            others += [p for i, p in enumerate(prompts) if i != row and p.adapter == prompt.adapter]
            size = max((common_length(prompt.ids, other.ids) for other in others), default=0)
            size = min(size, len(prompt.ids) - 1)
            key = Prompt(prompt.adapter, prompt.ids[:size])
            if size < self.min_tokens or size > self.max_tokens or key in self._entries:
                continue
            where = attention[row].nonzero().flatten()[:size]
            self._entries[key] = [
                (keys[row : row + 1, :, where].clone(), values[row : row + 1, :, where].clone())
                for keys, values in layers
            ]
            while sum(len(k.ids) for k in self._entries) > self.max_tokens:
                self._entries.popitem(last=False)
        self._recent.extend(prompts)
