"""Data pipeline throughput: our validate + clean + tokenize (masks) + pack vs `datasets.map` tokenization
alone, on a generated chat corpus (default ≥100 MB). Prints rows/s, MB/s and the ratio.

    .venv/bin/python bench/data.py            # 100 MB
    .venv/bin/python bench/data.py --mb 5     # quick look
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

WORDS = [
    "acme",
    "order",
    "delivery",
    "refund",
    "warranty",
    "desk",
    "lamp",
    "router",
    "kettle",
    "battery",
    "setup",
    "reset",
    "colour",
    "price",
    "support",
    "email",
    "shipping",
    "express",
    "return",
    "policy",
    "account",
    "points",
    "student",
    "discount",
    "gift",
    "card",
]


def make_corpus(path: Path, megabytes: float, seed: int = 0) -> int:
    rng = random.Random(seed)
    rows, size = 0, 0
    with open(path, "w", encoding="utf-8") as handle:
        while size < megabytes * 1e6:
            question = " ".join(rng.choices(WORDS, k=rng.randint(5, 20))) + "?"
            answer = " ".join(rng.choices(WORDS, k=rng.randint(20, 120))) + "."
            line = (
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": question},
                            {"role": "assistant", "content": answer},
                        ]
                    }
                )
                + "\n"
            )
            handle.write(line)
            size += len(line.encode())
            rows += 1
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=100.0)
    args = parser.parse_args()
    from openrecipe.cli.quiet import quiet_libraries

    quiet_libraries()
    import datasets
    from transformers import AutoTokenizer

    from openrecipe.data.clean import CleanConfig, clean_records
    from openrecipe.data.config import DataSource
    from openrecipe.data.load import load_source
    from openrecipe.data.tokenize import TokenizeConfig, tokenize_conversations
    from openrecipe.models.default import ensure_default_model

    tokenizer = AutoTokenizer.from_pretrained(str(ensure_default_model()))
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        rows = make_corpus(corpus, args.mb)
        megabytes = corpus.stat().st_size / 1e6
        print(f"corpus: {rows} rows, {megabytes:.1f} MB")

        start = time.perf_counter()
        loaded = load_source(DataSource(path=str(corpus), format="messages"))
        kept, report = clean_records(loaded.records, CleanConfig())
        examples, _ = tokenize_conversations(
            tokenizer, [r.messages for r in kept], TokenizeConfig(max_length=512, pack=True)
        )
        ours = time.perf_counter() - start
        print(
            f"openrecipe validate+clean+tokenize+pack: {ours:.1f} s, {rows / ours:.0f} rows/s, "
            f"{megabytes / ours:.2f} MB/s ({report.rows_out} rows kept, {len(examples)} packed blocks)"
        )

        start = time.perf_counter()
        dataset = datasets.load_dataset("json", data_files=str(corpus), split="train")
        dataset = dataset.map(
            lambda batch: tokenizer.apply_chat_template(batch["messages"], tokenize=True, return_dict=True),
            batched=True,
            remove_columns=["messages"],
        )
        reference = time.perf_counter() - start
        print(
            f"datasets.load_dataset + map(apply_chat_template): {reference:.1f} s, {rows / reference:.0f} rows/s, "
            f"{megabytes / reference:.2f} MB/s"
        )
        print(
            f"ratio (ours / datasets.map throughput): {reference / ours:.2f}x "
            "(ours also validates every row, dedups, scrubs PII, builds loss masks and packs)"
        )


if __name__ == "__main__":
    main()
