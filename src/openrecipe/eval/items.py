"""One test item, the unit every metric scores; its own module so metrics and test-set loading both
import it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TestItem:
    __test__ = False  # not a pytest test class
    id: str
    domain: str
    metric: str
    messages: list[dict[str, str]] | None = None
    text: str | None = None  # perplexity items
    references: list[str] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)
    tolerance: float = 0.0
    max_new_tokens: int = 64
    where: str = ""
    negative_of: str | None = None
