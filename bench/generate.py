"""Batched generation as eval and replay run it: each prefill batch decoded on its own (the one-batch path)
against prefill batches gathered into one static cache and decoded together (`models.generation`), on the
demo's support/product/general test prompts with the recipe's system prompt, taking turns; prints seconds,
the ratio and how many replies are identical.

    python bench/generate.py [--model default] [--batch 32] [--max-new-tokens 32] [--repeats 2] [--retrieve]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from serve import machine_line  # noqa: E402

SYSTEM = "You are Nova, the customer-support assistant of Acme Corp. Answer briefly and accurately."
TESTS = [ROOT / "data/acme/tests" / f"{name}.jsonl" for name in ("support", "product", "general")]


def conversations(retrieve: bool) -> list[list[dict[str, str]]]:
    from openrecipe.models.generation import build_messages

    prompts = [json.loads(line)["prompt"] for path in TESTS for line in path.read_text().splitlines() if line]
    chats = [build_messages(prompt, SYSTEM) for prompt in prompts]
    if not retrieve:
        return chats
    from openrecipe.data.config import DataSource
    from openrecipe.data.load import load_source
    from openrecipe.eval.retrieval import RetrievalSettings, Retriever, passages_from_records

    sources = [ROOT / "data/acme/faq.csv", ROOT / "data/acme/manual"]
    records = [record for path in sources for record in load_source(DataSource(path=str(path))).records]
    settings = RetrievalSettings(top_k=2)
    retriever = Retriever(passages_from_records(records, max_chars=settings.max_passage_chars), settings)
    return [retriever.augment(chat) for chat in chats]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default")
    parser.add_argument("--batch", type=int, default=32, help="prefill batch (the eval stage's batch_size)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--retrieve", action="store_true", help="two FAQ/manual passages in every prompt")
    args = parser.parse_args()

    from openrecipe.cli.quiet import quiet_libraries
    from openrecipe.models import generation
    from openrecipe.models.loading import load_model

    quiet_libraries()
    loaded = load_model(args.model, dtype="float32")
    chats = conversations(args.retrieve)
    settings = generation.GenerationSettings(max_new_tokens=args.max_new_tokens)
    gathered_shape = generation._cache_shape(loaded.model)
    if gathered_shape is None:
        sys.exit("this model's cache is not plain full attention: it always takes the one-batch path")
    print(machine_line())
    print(f"{len(chats)} prompts, prefill batches of {args.batch}, {args.max_new_tokens} new tokens")

    def run(gathered: bool) -> tuple[float, list[str]]:
        generation._cache_shape = (lambda _model: gathered_shape) if gathered else (lambda _model: None)
        start = time.perf_counter()
        replies = generation.generate_texts(loaded, chats, settings, batch_size=args.batch)
        return time.perf_counter() - start, replies

    seconds: dict[bool, list[float]] = {False: [], True: []}
    replies: dict[bool, list[str]] = {}
    for _ in range(args.repeats):
        for gathered in (False, True):
            took, replies[gathered] = run(gathered)
            seconds[gathered].append(took)
    alone, together = statistics.median(seconds[False]), statistics.median(seconds[True])
    same = sum(a == b for a, b in zip(replies[False], replies[True], strict=True))
    print(f"each prefill batch decoded alone: {', '.join(f'{s:.1f}' for s in seconds[False])} s")
    print(f"gathered into one decode:        {', '.join(f'{s:.1f}' for s in seconds[True])} s")
    print(f"speed-up {alone / together:.2f}x (medians); identical replies {same}/{len(chats)}")
    print(machine_line())


if __name__ == "__main__":
    main()
