"""Training throughput on the default model: our loop vs TRL's SFTTrainer, same data, LoRA config and
token count, each in its own process (peak RSS measured per process). Needs `pip install -e .[bench]`.

    .venv/bin/python bench/train.py --steps 16
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LORA = {"rank": 16, "alpha": 32, "dropout": 0.0}


def examples(path: Path) -> None:
    """FAQ + identity conversations with the recipe's system prompt, written once for both sides."""
    from openrecipe.config.common import Identity
    from openrecipe.data.config import DataSource
    from openrecipe.data.identity import identity_training_messages
    from openrecipe.data.load import load_source

    system = "You are Nova, the customer-support assistant of Acme Corp. Answer briefly and accurately."
    faq = load_source(
        DataSource(path=str(ROOT / "data/acme/faq.csv"), columns={"question": "question", "answer": "answer"})
    ).records
    rows = [[{"role": "system", "content": system}, *r.messages] for r in faq]
    rows += identity_training_messages(Identity(name="Nova", organization="Acme Corp"), system)
    path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in rows))


def run_ours(data: Path, out: Path, steps: int, batch: int) -> dict:
    from transformers import AutoTokenizer

    from openrecipe.data.tokenize import TokenizeConfig, tokenize_conversations
    from openrecipe.models.default import ensure_default_model
    from openrecipe.train.batching import TrainData
    from openrecipe.train.config import TrainSettings
    from openrecipe.train.loop import TrainJob, train

    tokenizer = AutoTokenizer.from_pretrained(str(ensure_default_model()))
    chats = [json.loads(line)["messages"] for line in data.read_text().splitlines()]
    tokenized, _ = tokenize_conversations(tokenizer, chats, TokenizeConfig(max_length=256))
    settings = TrainSettings(
        method="lora",
        lora=LORA,
        learning_rate=1e-3,
        max_steps=steps,
        batch_size=batch,
        eval_fraction=0.0,
        save_every_steps=10_000,
    )
    start = time.perf_counter()
    outcome = train(TrainJob("default", TrainData({"d": tokenized}, {"d": 1.0}), settings, out, seed=0))
    seconds = time.perf_counter() - start
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    tokens = sum(r["tokens"] for r in rows[1:])
    step_seconds = sum(r["tokens"] / r["tokens_per_s"] for r in rows[1:])
    return {"tokens_per_s": tokens / step_seconds, "wall_s": seconds, "mfu": outcome.metrics.get("mfu")}


def run_trl(data: Path, out: Path, steps: int, batch: int, checkpointing: bool = True) -> dict:
    import datasets
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from openrecipe.models.default import ensure_default_model

    folder = str(ensure_default_model())
    rows = []
    for line in data.read_text().splitlines():
        messages = json.loads(line)["messages"]
        rows.append({"prompt": messages[:-1], "completion": messages[-1:]})
    dataset = datasets.Dataset.from_list(rows)
    times: list[tuple[float, int]] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append((time.perf_counter() - self.start, 0))

    config = SFTConfig(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=batch,
        learning_rate=1e-3,
        max_length=256,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        dataloader_num_workers=0,
        completion_only_loss=True,
        include_num_input_tokens_seen=True,
        gradient_checkpointing=checkpointing,  # TRL's SFTConfig default is True
    )
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(folder),
        args=config,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(folder),
        peft_config=LoraConfig(
            r=LORA["rank"], lora_alpha=LORA["alpha"], target_modules="all-linear", task_type="CAUSAL_LM"
        ),
        callbacks=[Clock()],
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    tokens = trainer.state.num_input_tokens_seen
    step_seconds = sum(t for t, _ in times)
    first = times[0][0] if times else 0
    per_step = tokens / max(1, len(times))
    return {"tokens_per_s": (tokens - per_step) / max(1e-9, step_seconds - first), "wall_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--side", choices=["ours", "trl", "trl-no-checkpointing"])
    parser.add_argument("--data")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.side:
        from openrecipe.cli.quiet import quiet_libraries

        quiet_libraries()
        if args.side == "ours":
            result = run_ours(Path(args.data), Path(args.out), args.steps, args.batch)
        else:
            checkpointing = args.side == "trl"
            result = run_trl(Path(args.data), Path(args.out), args.steps, args.batch, checkpointing)
        result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print("RESULT " + json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.jsonl"
        examples(data)
        results = {}
        for side in ("ours", "trl", "trl-no-checkpointing"):
            process = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--side",
                    side,
                    "--data",
                    str(data),
                    "--out",
                    str(Path(tmp) / side),
                    "--steps",
                    str(args.steps),
                    "--batch",
                    str(args.batch),
                ],
                capture_output=True,
                text=True,
            )
            line = next((row for row in process.stdout.splitlines() if row.startswith("RESULT ")), None)
            if line is None:
                print(f"{side} failed:\n{process.stderr[-2000:]}")
                return
            results[side] = json.loads(line[7:])
            print(f"{side}: {results[side]}")
    ours = results["ours"]
    for side, label in (("trl", "TRL SFTTrainer, its defaults"), ("trl-no-checkpointing", "TRL, no checkpointing")):
        other = results[side]
        print(
            f"vs {label}: tokens/s {ours['tokens_per_s'] / other['tokens_per_s']:.2f}x, "
            f"peak RSS {ours['peak_rss_gib'] / other['peak_rss_gib']:.2f}x"
        )
    print(f"our MFU: {ours.get('mfu')}")
    print("LLaMA-Factory on the same job (../shared/FINDINGS.md, AMX machine): 255 tok/s")


if __name__ == "__main__":
    main()
