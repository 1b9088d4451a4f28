"""Retrieval for the prompting-first baseline: the recipe's own data and documents indexed with BM25
(bm25s), and the top-k passages put in front of each test question — what anyone with a FAQ tries before
fine-tuning, so the report can say when fine-tuning is worth it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import Field

from openrecipe.config.base import StrictModel
from openrecipe.data.records import Record
from openrecipe.errors import OpenRecipeError
from openrecipe.utils.hashing import sha256_json

PROMPT_VERSION = 1


class RetrievalSettings(StrictModel):
    top_k: int = Field(3, ge=1, le=20, description="Passages put into the prompt")
    max_passage_chars: int = Field(600, ge=50, description="Longer passages are cut to this length")


def passages_from_records(records: list[Record], *, max_chars: int = 600) -> list[str]:
    """Chat rows become "Q: … A: …" (questions sharing one answer merge into one passage); text rows are
    split at blank lines, a Markdown heading staying with the paragraph below it."""
    by_answer: dict[str, list[str]] = {}
    texts: list[str] = []
    for record in records:
        if record.messages is not None:
            questions = [m["content"].strip() for m in record.messages if m["role"] == "user"]
            answers = [m["content"].strip() for m in record.messages if m["role"] == "assistant"]
            if questions and answers:
                asked = by_answer.setdefault(answers[-1], [])
                if questions[-1] not in asked:
                    asked.append(questions[-1])
        elif record.text:
            texts += _paragraphs(record.text)
    passages = [f"Q: {' / '.join(questions)}\nA: {answer}" for answer, questions in by_answer.items()]
    passages += texts
    return [p if len(p) <= max_chars else p[:max_chars].rsplit(" ", 1)[0] + " …" for p in dict.fromkeys(passages)]


def _paragraphs(text: str) -> list[str]:
    title, heading, out = "", "", []
    for block in re.split(r"\n\s*\n", text):
        block = block.strip()
        if not block:
            continue
        lines = block.splitlines()
        while lines and lines[0].lstrip().startswith("#"):
            line = lines.pop(0).lstrip("#").strip()
            if block.startswith("# ") and not title:
                title = line
            else:
                heading = line
        if lines:
            prefix = " — ".join(part for part in (title, heading) if part)
            body = " ".join(line.strip() for line in lines)
            out.append(f"{prefix}: {body}" if prefix else body)
    return out


@dataclass
class Retriever:
    """BM25 over passages; `search` returns up to k passages that share at least one term with the query."""

    passages: list[str]
    settings: RetrievalSettings = field(default_factory=RetrievalSettings)

    def __post_init__(self) -> None:
        import logging

        import bm25s

        # bm25s sets its own logger to DEBUG on import; its index-building messages are not the user's.
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        if not self.passages:
            raise OpenRecipeError(
                "retrieval has nothing to index", fix="give `sources:` with chat data or documents (.md, .txt)"
            )
        self._index = bm25s.BM25()
        self._index.index(bm25s.tokenize(self.passages, stopwords="en", show_progress=False), show_progress=False)

    @property
    def digest(self) -> str:
        return sha256_json({"passages": self.passages, **self.settings.model_dump(), "prompt": PROMPT_VERSION})

    def search(self, query: str) -> list[str]:
        import bm25s

        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)
        if not tokens[0]:
            return []
        k = min(self.settings.top_k, len(self.passages))
        documents, scores = self._index.retrieve(tokens, k=k, show_progress=False)
        return [self.passages[int(d)] for d, s in zip(documents[0], scores[0], strict=True) if s > 0]

    def augment(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """The retrieved passages go into the system message (created if absent), before the question."""
        question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        found = self.search(question)
        if not found:
            return messages
        context = "Use these passages if they answer the question:\n" + "\n\n".join(found)
        if messages and messages[0]["role"] == "system":
            return [{"role": "system", "content": f"{messages[0]['content']}\n\n{context}"}, *messages[1:]]
        return [{"role": "system", "content": context}, *messages]
