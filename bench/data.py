"""Data pipeline throughput: our validate + clean + tokenize (masks) + pack vs `datasets.map` tokenization
alone, on a generated chat corpus (default ≥100 MB). Prints rows/s, MB/s and the ratio.

    .venv/bin/python bench/data.py            # 100 MB
    .venv/bin/python bench/data.py --mb 5     # quick look

Scale mode: a generated messages JSONL (default 1M rows) and a text JSONL corpus (default 2 GB), each
through read → validate → clean (exact + near dedup) → tokenize → pack with everything streamed, next to
`datasets` load + map on the same file; every pipeline runs in its own process so its peak RSS is its own.

    .venv/bin/python bench/data.py --scale                          # 1M rows + 2 GB
    .venv/bin/python bench/data.py --scale --rows 20000 --text-gb 0.05 --workdir /tmp/bench-data
"""

from __future__ import annotations

import argparse
import itertools
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
    args, _ = parser.parse_known_args()
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


TEXT_WORDS = 20000


def make_text_corpus(path: Path, gigabytes: float, seed: int = 0) -> int:
    """Web-like documents from a large synthetic vocabulary; every 50th is an edited copy of an earlier one
    and every 97th an exact copy, so both kinds of dedup have work to do. Words are drawn a million at a time
    (numpy) and documents cut from them, so writing gigabytes takes minutes, not the benchmark's time."""
    import numpy as np

    rng = random.Random(seed)
    draw = np.random.default_rng(seed)
    vocabulary = np.array(
        ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 10))) for _ in range(TEXT_WORDS)]
    )
    recent: list[str] = []
    rows, size, words, cursor = 0, 0, [], 0
    with open(path, "w", encoding="utf-8") as handle:
        while size < gigabytes * 1e9:
            if rows % 97 == 96 and recent:
                text = rng.choice(recent)
            elif rows % 50 == 49 and recent:
                edited = rng.choice(recent).split(" ")
                edited[rng.randrange(len(edited))] = str(vocabulary[rng.randrange(TEXT_WORDS)])
                text = " ".join(edited)
            else:
                length = rng.randint(150, 600)
                if cursor + length > len(words):
                    words, cursor = vocabulary[draw.integers(0, TEXT_WORDS, 1_000_000)].tolist(), 0
                text = " ".join(words[cursor : cursor + length]) + "."
                cursor += length
                recent = [*recent[-99:], text]
            line = json.dumps({"text": text, "url": f"https://example.com/{rows}"}) + "\n"
            handle.write(line)
            size += len(line)
            rows += 1
    return rows


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tokenizer():
    from transformers import AutoTokenizer

    from openrecipe.models.default import ensure_default_model

    return AutoTokenizer.from_pretrained(str(ensure_default_model()))


def phase_ours(corpus: Path, kind: str, workdir: Path) -> dict:
    import numpy as np

    from openrecipe.data.blocks import pack_texts_to_disk
    from openrecipe.data.clean import CleanConfig
    from openrecipe.data.config import DataSource
    from openrecipe.data.prepare import prepare_data
    from openrecipe.data.tokenize import TokenizeConfig, tokenize_conversations

    tokenizer = _tokenizer()
    out = workdir / f"ours-{kind}"
    start = time.perf_counter()
    summary = prepare_data([DataSource(path=str(corpus), format=kind)], out, clean=CleanConfig(max_chars=None))
    cleaned = time.perf_counter()

    def rows():
        with open(out / "data.jsonl", encoding="utf-8") as handle:
            for line in handle:
                yield json.loads(line)

    if kind == "text":
        blocks, stats = pack_texts_to_disk(tokenizer, (row["text"] for row in rows()), 512, out / "blocks")
        packed, tokens = len(blocks), stats.tokens
    else:
        packed = tokens = 0
        batch: list = []
        with open(out / "blocks.bin", "wb") as sink:
            for row in itertools.chain(rows(), [None]):
                if row is not None:
                    batch.append(row["messages"])
                if len(batch) == 4096 or (row is None and batch):
                    examples, _ = tokenize_conversations(tokenizer, batch, TokenizeConfig(max_length=512, pack=True))
                    for block in examples:
                        sink.write(np.asarray(block["input_ids"], dtype=np.uint32).tobytes())
                        tokens += len(block["input_ids"])
                    packed += len(examples)
                    batch = []
    done = time.perf_counter()
    return {
        "pipeline": f"openrecipe {kind}: read+validate+clean+tokenize+pack",
        "seconds": round(done - start, 1),
        "clean_seconds": round(cleaned - start, 1),
        "tokenize_seconds": round(done - cleaned, 1),
        "rows_in": summary["clean"]["rows_in"],
        "rows_out": summary["clean"]["rows_out"],
        "removed": summary["clean"]["removed"],
        "blocks": packed,
        "tokens": tokens,
        "peak_rss_mb": round(peak_rss_mb()),
    }


def phase_datasets(corpus: Path, kind: str, workdir: Path) -> dict:
    import datasets

    tokenizer = _tokenizer()
    start = time.perf_counter()
    dataset = datasets.load_dataset("json", data_files=str(corpus), split="train", cache_dir=str(workdir / "hf-cache"))
    if kind == "text":
        dataset = dataset.map(lambda batch: tokenizer(batch["text"]), batched=True, remove_columns=dataset.column_names)
    else:
        dataset = dataset.map(
            lambda batch: tokenizer.apply_chat_template(batch["messages"], tokenize=True, return_dict=True),
            batched=True,
            remove_columns=dataset.column_names,
        )
    return {
        "pipeline": f"datasets {kind}: load_dataset + map(tokenize)",
        "seconds": round(time.perf_counter() - start, 1),
        "rows_in": len(dataset),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def run_phase(name: str, corpus: Path, kind: str, workdir: Path) -> dict:
    """One pipeline in a fresh process, so peak RSS is measured for it alone."""
    import subprocess
    import sys

    command = [
        sys.executable,
        __file__,
        "--phase",
        name,
        "--kind",
        kind,
        "--input",
        str(corpus),
        "--workdir",
        str(workdir),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{name} {kind} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def scale(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-data-"))
    workdir.mkdir(parents=True, exist_ok=True)
    messages, text = workdir / "messages.jsonl", workdir / "text.jsonl"
    if not text.exists():
        make_text_corpus(text, args.text_gb)
    if not messages.exists():
        make_corpus_rows(messages, args.rows)
    results = []
    for kind, corpus in (("text", text), ("messages", messages)):
        megabytes = corpus.stat().st_size / 1e6
        for name in ("ours", "datasets"):
            row = run_phase(name, corpus, kind, workdir)
            row["mb"] = round(megabytes, 1)
            row["rows_per_s"] = round(row["rows_in"] / row["seconds"])
            row["mb_per_s"] = round(megabytes / row["seconds"], 2)
            results.append(row)
            print(json.dumps(row), flush=True)
    print("\n| pipeline | input | seconds | rows/s | MB/s | peak RSS |\n|---|---|---|---|---|---|")
    for row in results:
        print(
            f"| {row['pipeline']} | {row['rows_in']} rows, {row['mb'] / 1000:.2f} GB | {row['seconds']} | "
            f"{row['rows_per_s']} | {row['mb_per_s']} | {row['peak_rss_mb'] / 1024:.2f} GiB |"
        )


def make_corpus_rows(path: Path, rows: int) -> None:
    rng = random.Random(1)
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(rows):
            question = " ".join(rng.choices(WORDS, k=rng.randint(5, 20))) + "?"
            answer = " ".join(rng.choices(WORDS, k=rng.randint(20, 120))) + "."
            row = {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
            handle.write(json.dumps(row) + "\n")


def entry() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=100.0)
    parser.add_argument("--scale", action="store_true")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--text-gb", type=float, default=2.0)
    parser.add_argument("--workdir")
    parser.add_argument("--phase", choices=["ours", "datasets"])
    parser.add_argument("--kind", choices=["messages", "text"])
    parser.add_argument("--input")
    args = parser.parse_args()
    if args.phase:
        from openrecipe.cli.quiet import quiet_libraries

        quiet_libraries()
        run = phase_ours if args.phase == "ours" else phase_datasets
        print(json.dumps(run(Path(args.input), args.kind, Path(args.workdir))))
    elif args.scale:
        scale(args)
    else:
        main()


if __name__ == "__main__":
    entry()
