"""Serving throughput on the default model: aggregate output tokens/s and p50/p99 latency at concurrency
1, 4, 8 and 16 against one server, next to sequential `model.generate` calls in one process; JSON-schema
constrained replies next to free text; and a mixed-adapter burst (half `nova`, half `lumen`) next to a
single-adapter one.

    .venv/bin/python bench/serve.py --requests 32 --max-tokens 48
    .venv/bin/python bench/serve.py --engine llamacpp --slots 8 --model runs/acme-assistant/export/*-q8_0.gguf
    .venv/bin/python bench/serve.py --engine llama-server --slots 8 --model X.gguf --only concurrency
    .venv/bin/python bench/serve.py --only json,adapters

Compared loads take turns (`--repeats`, default 3) and each reports its median run, in tokens/s and in tokens per
CPU second of the engine thread, with the requests in flight on average. A load ends with its last replies
decoding beside fewer and fewer others (replies run from a few tokens to the cap), so the fewer requests a
load has, the more its figure at concurrency 8 measures that tail rather than 8 in flight: 32 requests by default.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

# A different question per request, as users send them: a question repeated within a load would find its whole
# prompt kept from its last turn at concurrency 1 (llama.cpp's slots, our prefix cache), which measures the cache.
PROMPTS = [
    "What is the capital of France?",
    "Give me a tip for sleeping better.",
    "Why is the sky blue?",
    "Name three primary colors.",
    "How do plants make food?",
    "What does a thermometer measure?",
    "Write a sentence about the sea.",
    "How many continents are there?",
    "What is the boiling point of water?",
    "Suggest a name for a pet cat.",
    "Why do leaves change color in autumn?",
    "What is a prime number?",
    "How does a bicycle stay upright?",
    "Describe a rainy morning in one sentence.",
    "What do bees make?",
    "How far away is the Moon?",
    "Give me a healthy breakfast idea.",
    "What is the largest ocean on Earth?",
    "Why do we need sleep?",
    "Name a famous painter.",
    "How do magnets work?",
    "What is the opposite of cold?",
    "Write a short greeting for a birthday card.",
    "What causes thunder?",
    "How many legs does a spider have?",
    "What language is spoken in Brazil?",
    "Give me a tip for learning to cook.",
    "Why is exercise good for you?",
    "What is the freezing point of water in Fahrenheit?",
    "Name two planets in our solar system.",
    "How do fish breathe underwater?",
    "What is a good way to save money?",
]


ROWS = 8  # the transformers engine's max_batch_size here, and transformers' generate_batch's bound beside it

SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "maxLength": 80},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "tags": {"type": "array", "items": {"enum": ["fact", "advice", "other"]}, "maxItems": 3},
    },
    "required": ["answer", "confidence", "tags"],
    "additionalProperties": False,
}


def engine_cpu_seconds(engine) -> float | None:
    """CPU time of the engine's worker thread: unlike wall time, other jobs on the machine barely change it."""
    thread = getattr(engine, "_thread", None)
    if thread is None or thread.ident is None:
        return None
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    except (AttributeError, OSError):
        return None


def run_load(client, model, concurrency: int, requests: int, max_tokens: int, engine=None, **extra) -> dict:
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
                model=model if isinstance(model, str) else model[i % len(model)],
                messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
                max_tokens=max_tokens,
                temperature=0,
                **extra,
            )
            with lock:
                latencies.append(time.perf_counter() - start)
                tokens.append(reply.usage.completion_tokens)

    cpu_before = engine_cpu_seconds(engine)
    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    cpu_after = engine_cpu_seconds(engine)
    latencies.sort()
    return {
        "tokens_per_s": sum(tokens) / wall,
        "tokens_per_cpu_s": sum(tokens) / (cpu_after - cpu_before) if cpu_before is not None else None,
        "p50_s": statistics.median(latencies),
        "p99_s": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "in_flight": sum(latencies) / wall,  # requests in flight on average: below `concurrency` in the tail
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


def transformers_continuous_batching(model: str, requests: int, max_tokens: int, rows: int) -> float:
    """transformers' own continuous batching (`generate_batch`) on the same prompts, all submitted at once, at
    most `rows` decoding together (`max_requests_per_batch`), as our engine's `max_batch_size` bounds it."""
    from transformers import ContinuousBatchingConfig, GenerationConfig

    from openrecipe.models.generation import build_messages, render_chat
    from openrecipe.models.loading import load_model

    loaded = load_model(model)
    tokenizer = loaded.tokenizer
    inputs = [
        tokenizer(render_chat(tokenizer, build_messages(PROMPTS[i % len(PROMPTS)])), add_special_tokens=False)[
            "input_ids"
        ]
        for i in range(requests)
    ]
    config = GenerationConfig(
        max_new_tokens=max_tokens,
        do_sample=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    start = time.perf_counter()
    batching = ContinuousBatchingConfig(max_requests_per_batch=rows)
    outputs = loaded.model.generate_batch(
        inputs, generation_config=config, continuous_batching_config=batching, warmup=False
    )
    wall = time.perf_counter() - start
    return sum(len(output.generated_tokens) for output in outputs.values()) / wall


def make_adapters(model: str, out: Path) -> dict[str, str]:
    """Two random LoRA adapters on the served model (throughput does not depend on what they learned)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from openrecipe.models.loading import load_model

    adapters = {}
    for seed, name in enumerate(["nova", "lumen"]):
        torch.manual_seed(seed)
        loaded = load_model(model)
        config = LoraConfig(r=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights=False)
        get_peft_model(loaded.model, config).save_pretrained(str(out / name))
        adapters[name] = str(out / name)
    return adapters


def machine_line() -> str:
    """CPU flags that decide fp32/bf16 speed, torch threads and the load average: next to every figure."""
    import torch

    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = {f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "amx", "fma"))}
                break
    except OSError:
        pass
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"cpu flags: {' '.join(sorted(flags)) or '?'}; torch threads {torch.get_num_threads()}; load average {load}"


def interleaved(loads: dict, repeats: int) -> dict:
    """Run each named load `repeats` times, taking turns, and keep each one's median run (by tokens/s):
    the machine's load drifts over a minute, and a single back-to-back pair mostly measures that drift."""
    runs: dict = {name: [] for name in loads}
    for _ in range(repeats):
        for name, load in loads.items():
            runs[name].append(load())
    return {name: sorted(rows, key=lambda row: row["tokens_per_s"])[len(rows) // 2] for name, rows in runs.items()}


def report(label: str, row: dict) -> None:
    cpu = f", {row['tokens_per_cpu_s']:.1f} tok per engine CPU s" if row.get("tokens_per_cpu_s") else ""
    print(
        f"{label}: {row['tokens_per_s']:.1f} tok/s, p50 {row['p50_s']:.2f} s, p99 {row['p99_s']:.2f} s, "
        f"{row['in_flight']:.1f} in flight on average{cpu}"
    )


def ratio(label: str, top: dict, bottom: dict) -> None:
    """Wall-clock ratio, and the same ratio per CPU second of the engine thread (less swayed by machine load)."""
    cpu = ""
    if top.get("tokens_per_cpu_s") and bottom.get("tokens_per_cpu_s"):
        cpu = f" (per engine CPU second: {top['tokens_per_cpu_s'] / bottom['tokens_per_cpu_s']:.2f}x)"
    print(f"ratio {label}: {top['tokens_per_s'] / bottom['tokens_per_s']:.2f}x{cpu}")


@contextmanager
def serving(args, extra: dict):
    """Our server with the chosen engine, or llama.cpp's own (`--engine llama-server`, built by `make llama-server`)
    with as many slots and the same number of threads as our llama.cpp engine uses by default."""
    from integration.serve.conftest import llama_server_binary, running_llama_server, running_server
    from openrecipe.utils.cpus import physical_cores

    if args.engine != "llama-server":
        with running_server(model=args.model, engine=args.engine, **extra) as served:
            yield served
        return
    binary = llama_server_binary()
    if binary is None:
        sys.exit("llama-server is not built: run `make llama-server`")
    threads = args.threads or physical_cores()
    with running_llama_server(binary, Path(args.model), slots=args.slots, context_length=4096, threads=threads) as base:
        yield base, None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default")
    parser.add_argument("--engine", default="transformers", help="transformers, llamacpp or llama-server")
    parser.add_argument(
        "--requests", type=int, default=32, help="per load; the last replies finish with fewer in flight"
    )
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--slots", type=int, default=4, help="llamacpp, llama-server: parallel slots")
    parser.add_argument(
        "--threads", type=int, default=None, help="llamacpp, llama-server: threads per batch (default: one per core)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each compared load, taking turns; medians")
    parser.add_argument(
        "--only", default="concurrency,json,adapters,transformers-cb", help="comma-separated parts to run"
    )
    args = parser.parse_args()
    parts = set(args.only.split(","))
    from openai import OpenAI

    from integration.serve.conftest import running_server
    from openrecipe.cli.quiet import quiet_libraries

    quiet_libraries()
    extra = {"slots": args.slots, "threads": args.threads} if args.engine == "llamacpp" else {"max_batch_size": ROWS}
    print(machine_line())
    with serving(args, extra) as (base, engine):
        client = OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=600)
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        if "concurrency" in parts:
            load = functools.partial(run_load, client, "tiny", requests=args.requests, max_tokens=args.max_tokens)
            results = interleaved({c: functools.partial(load, c, engine=engine) for c in (1, 4, 8, 16)}, args.repeats)
            for concurrency, row in results.items():
                report(f"{args.engine} concurrency {concurrency}", row)
            ratio("concurrency 8 / concurrency 1", results[8], results[1])
            cached = engine.stats().get("prefix_cached_tokens") if engine is not None else None
            if cached is not None:  # the prompts share a system turn and repeat every len(PROMPTS) requests
                print(f"prompt tokens served from the prefix cache so far: {cached}")
        if "json" in parts:
            schema = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}
            load = functools.partial(run_load, client, "tiny", 8, args.requests, args.max_tokens, engine)
            compared = interleaved(
                {"free": load, "json": functools.partial(load, response_format=schema)}, args.repeats
            )
            free, constrained = compared["free"], compared["json"]
            report(f"{args.engine} free text, concurrency 8", free)
            report(f"{args.engine} JSON schema, concurrency 8", constrained)
            ratio("JSON schema / free text", constrained, free)
    if "adapters" in parts and args.engine == "transformers":
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            adapters = make_adapters(args.model, Path(folder))
            with running_server(model=args.model, adapters=adapters, max_batch_size=ROWS) as (base, engine):
                client = OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=600)
                loads = {
                    name: functools.partial(run_load, client, model, 8, args.requests, args.max_tokens, engine)
                    for name, model in (("single", "nova"), ("mixed", ["nova", "lumen"]))
                }
                compared = interleaved(loads, args.repeats)
                single, mixed = compared["single"], compared["mixed"]
        report("one adapter (nova), concurrency 8", single)
        report("mixed adapters (nova + lumen), concurrency 8", mixed)
        ratio("mixed / single adapter", mixed, single)
    if "transformers-cb" in parts and args.engine == "transformers":
        try:
            library = transformers_continuous_batching(args.model, args.requests, args.max_tokens, rows=ROWS)
            print(
                f"transformers generate_batch (continuous batching), {args.requests} submitted at once, "
                f"at most {ROWS} decoding together: {library:.1f} tok/s"
            )
            if "concurrency" in parts:  # ours with 8 in flight, ROWS at a time
                ours = results[8]["tokens_per_s"]
                print(f"ours at concurrency 8 / generate_batch: {ours:.1f} / {library:.1f} = {ours / library:.2f}x")
        except Exception as error:  # report, do not hide, that the library path fails on this machine
            print(f"transformers generate_batch failed: {type(error).__name__}: {error}")
    if "concurrency" in parts and args.engine == "transformers":
        baseline = sequential_generate(args.model, min(args.requests, 8), args.max_tokens)
        print(f"sequential model.generate in one process: {baseline:.1f} tok/s")
        print(f"ratio (server at concurrency 8 / sequential generate): {results[8]['tokens_per_s'] / baseline:.2f}x")
    print(machine_line())


if __name__ == "__main__":
    main()
