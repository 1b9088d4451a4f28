"""Walk nested config values (dicts, lists, tuples) and yield every string in them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def iter_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from iter_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from iter_strings(item)
