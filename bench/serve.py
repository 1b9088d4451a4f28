"""Serving throughput on the default model: aggregate output tokens/s and p50/p99 latency at concurrency
1, 4 and 8 against one server, next to sequential `model.generate` calls in one process.

    .venv/bin/python bench/serve.py --requests 16 --max-tokens 48
    .venv/bin/python bench/serve.py --engine llamacpp --model runs/acme-assistant/export/model-q8_0.gguf
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

PROMPTS = [
    "What is the capital of France?",
    "Give me a tip for sleeping better.",
    "Why is the sky blue?",
    "Name three primary colors.",
    "How do plants make food?",
    "What does a thermometer measure?",
    "Write a sentence about the sea.",
    "How many continents are there?",
]


def run_load(client, model: str, concurrency: int, requests: int, max_tokens: int) -> dict:
    latencies, tokens = [], []
    lock = threading.Lock()
    index = {"next": 0}

    def worker() -> None:
        while True:
            with lock:
                if index["next"] >= requests:
                    return
                i = index["next"]
                index["next"] += 1
            start = time.perf_counter()
            reply = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                max_tokens=max_tokens,
                temperature=0,
            )
            with lock:
                latencies.append(time.perf_counter() - start)
                tokens.append(reply.usage.completion_tokens)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    latencies.sort()
    return {
        "tokens_per_s": sum(tokens) / wall,
        "p50_s": statistics.median(latencies),
        "p99_s": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


def sequential_generate(model: str, requests: int, max_tokens: int) -> float:
    from openrecipe.models.generation import GenerationSettings, build_messages, generate_texts
    from openrecipe.models.loading import load_model

    loaded = load_model(model)
    start, produced = time.perf_counter(), 0
    for i in range(requests):
        reply = generate_texts(
            loaded,
            [build_messages(PROMPTS[i % len(PROMPTS)])],
            GenerationSettings(max_new_tokens=max_tokens),
            batch_size=1,
        )[0]
        produced += len(loaded.tokenizer(reply, add_special_tokens=False)["input_ids"]) + 1
    return produced / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default")
    parser.add_argument("--engine", default="transformers")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    from openai import OpenAI

    from integration.serve.conftest import running_server
    from openrecipe.cli.quiet import quiet_libraries

    quiet_libraries()
    with running_server(model=args.model, engine=args.engine, max_batch_size=8) as (base, _):
        client = OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=600)
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        results = {c: run_load(client, "tiny", c, args.requests, args.max_tokens) for c in (1, 4, 8)}
    for concurrency, row in results.items():
        print(
            f"{args.engine} concurrency {concurrency}: {row['tokens_per_s']:.1f} tok/s, "
            f"p50 {row['p50_s']:.2f} s, p99 {row['p99_s']:.2f} s"
        )
    if args.engine == "transformers":
        baseline = sequential_generate(args.model, min(args.requests, 8), args.max_tokens)
        print(f"sequential model.generate in one process: {baseline:.1f} tok/s")
        print(f"ratio (server at concurrency 8 / sequential generate): {results[8]['tokens_per_s'] / baseline:.2f}x")


if __name__ == "__main__":
    main()
