"""Training throughput on the default model, one job, one machine: our loop (eager and compiled) vs TRL's
SFTTrainer (its defaults, i.e. gradient checkpointing on, and without it), and LLaMA-Factory (its defaults)
where its own environment exists. Same data, LoRA config, batch and steps; tokens/s counts the same trained
(non-padding) tokens on every side. Each side runs in its own process, so peak RSS is per side. Needs
`pip install -e .[bench]`; the LLaMA-Factory side needs `make bench-llamafactory-env` (a separate venv: it
pins older transformers/peft/trl than ours), and is skipped without it.

    .venv/bin/python bench/train.py --steps 6 --batch 8
    .venv/bin/python bench/train.py --steps 6 --batch 4 --sides ours,trl,llamafactory
    .venv/bin/python bench/train.py --ddp 2      # scaling: 2 processes vs 1 on the same job
    .venv/bin/python bench/train.py --fsdp 2
    .venv/bin/python bench/train.py --zero 2 --zero-stage 3   # DeepSpeed ZeRO (stage 2 by default)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LORA = {"rank": 16, "alpha": 32, "dropout": 0.0}
SIDES = {
    "ours": "ours, eager",
    "ours-compiled": "ours, compiled",
    "trl": "TRL SFTTrainer, its defaults (gradient checkpointing)",
    "trl-no-checkpointing": "TRL SFTTrainer, no gradient checkpointing",
    "llamafactory": "LLaMA-Factory, its defaults (gradient checkpointing)",
}
LLAMAFACTORY_VENV = Path.home() / ".cache/openrecipe/bench-llamafactory-venv"


def llamafactory_python() -> Path:
    """The interpreter of LLaMA-Factory's own environment (bench/llamafactory_env.sh makes it)."""
    given = os.environ.get("OPENRECIPE_LLAMAFACTORY_PYTHON")
    return Path(given) if given else LLAMAFACTORY_VENV / "bin/python"


def examples(path: Path) -> None:
    """FAQ + identity conversations with the recipe's system prompt, written once for every side."""
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


def distributed_settings(strategy: str) -> dict:
    """`zero2`/`zero3` name DeepSpeed at a ZeRO stage; `ddp` and `fsdp` name themselves."""
    if strategy.startswith("zero"):
        return {"strategy": "deepspeed", "zero_stage": int(strategy[4:])}
    return {"strategy": strategy}


def run_ours(
    data: Path, out: Path, steps: int, batch: int, compiled: bool, strategy: str = "ddp", micro_tokens: str = "auto"
) -> dict:
    """Tokens/s over the steps after the first (and, compiled, after every step that compiled a new shape)."""
    from transformers import AutoTokenizer

    from openrecipe.data.tokenize import TokenizeConfig, tokenize_conversations
    from openrecipe.models.default import ensure_default_model
    from openrecipe.train import loop
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
        compile=compiled,
        distributed=distributed_settings(strategy),
        micro_batch_tokens=micro_tokens
        if micro_tokens == "auto"
        else None
        if micro_tokens == "none"
        else int(micro_tokens),
    )
    # CPU seconds of each step (this process, all threads): on a shared machine wall time measures the others.
    cpu_seconds: list[float] = []
    step = loop._Training._step

    def timed_step(self):
        start = time.process_time()
        row = step(self)
        cpu_seconds.append(time.process_time() - start)
        return row

    loop._Training._step = timed_step
    start = time.perf_counter()
    outcome = train(TrainJob("default", TrainData({"d": tokenized}, {"d": 1.0}), settings, out, seed=0))
    seconds = time.perf_counter() - start
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # Steps after the first, and compiled, only steps after the last one that compiled a new shape.
    graphs = [row.get("compile_graphs", 0) for row in rows]
    settled = [i for i in range(1, len(rows)) if graphs[i - 1] == graphs[i] == graphs[-1]] or [len(rows) - 1]
    tokens = sum(rows[i]["tokens"] for i in settled)
    step_seconds = sum(rows[i]["tokens"] / rows[i]["tokens_per_s"] for i in settled)
    all_tokens = sum(r["tokens"] for r in rows)
    all_seconds = sum(r["tokens"] / r["tokens_per_s"] for r in rows)
    return {
        "tokens_per_s": tokens / step_seconds,
        "tokens_per_cpu_s": tokens / sum(cpu_seconds[i] for i in settled),
        "tokens_per_s_with_first_steps": all_tokens / all_seconds,
        "measured_steps": len(settled),
        "tokens_per_step": all_tokens / len(rows),
        "wall_s": seconds,
        "compile_s": outcome.metrics.get("compile_seconds"),
        "compile_graphs": outcome.metrics.get("compile_graphs"),
        "final_loss": outcome.metrics.get("final_loss"),
    }


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
    times: list[tuple[float, float, int]] = []
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
        include_num_input_tokens_seen="non_padding",  # the tokens our side counts
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
        callbacks=[step_clock(TrainerCallback, times)],
    )
    start = time.perf_counter()
    trainer.train()
    return clock_result(times, trainer.state.num_input_tokens_seen, time.perf_counter() - start)


def step_clock(base: type, times: list[tuple[float, float, int]]):
    """A Trainer callback appending (wall s, CPU s, non-padding input tokens) of every step to `times`."""

    class Clock(base):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start, self.cpu, self.seen = time.perf_counter(), time.process_time(), state.num_input_tokens_seen

        def on_step_end(self, args, state, control, **kwargs):
            seconds, cpu = time.perf_counter() - self.start, time.process_time() - self.cpu
            times.append((seconds, cpu, state.num_input_tokens_seen - self.seen))

    return Clock()


def clock_result(times: list[tuple[float, float, int]], tokens_seen: int, seconds: float) -> dict:
    """Tokens/s over the steps after the first, as our side counts them."""
    # The token counter is updated before the step's callbacks on some versions and after on others: count
    # the step's tokens as the difference seen from one step's begin to the next.
    settled = times[1:] or times
    tokens = sum(count for _, _, count in settled)
    return {
        "tokens_per_s": tokens / max(1e-9, sum(t for t, _, _ in settled)),
        "tokens_per_cpu_s": tokens / max(1e-9, sum(cpu for _, cpu, _ in settled)),
        "measured_steps": len(settled),
        "tokens_per_step": tokens_seen / max(1, len(times)),
        "wall_s": seconds,
    }


def llamafactory_dataset(data: Path, folder: Path) -> str:
    """Registers the bench's data (OpenAI-style `messages` rows, system first) as LLaMA-Factory's sharegpt
    format in `folder`/dataset_info.json; returns the dataset's name."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data.jsonl").write_text(data.read_text())
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    info = {
        "bench": {
            "file_name": "data.jsonl",
            "formatting": "sharegpt",
            "columns": {"messages": "messages"},
            "tags": {**tags, "system_tag": "system"},
        }
    }
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=2))
    return "bench"


def run_llamafactory(data: Path, out: Path, steps: int, batch: int, model: str) -> dict:
    """LLaMA-Factory's SFT stage with its defaults (gradient checkpointing on, LoRA upcast to fp32, prompt
    tokens masked), run in its own environment: nothing from openrecipe is importable here."""
    from llamafactory.train.tuner import run_exp
    from transformers import TrainerCallback

    times: list[tuple[float, float, int]] = []
    trainer_state: dict = {}

    class Seen(TrainerCallback):
        def on_train_end(self, args, state, control, **kwargs):
            trainer_state["tokens"] = state.num_input_tokens_seen

    args = {
        "stage": "sft",
        "do_train": True,
        "model_name_or_path": model,
        "trust_remote_code": False,
        "dataset": llamafactory_dataset(data, out / "data"),
        "dataset_dir": str(out / "data"),
        # Gives the same tokens as the model's own chat template on these rows (a system message in each).
        "template": "smollm2",
        "cutoff_len": 256,
        "finetuning_type": "lora",
        "lora_rank": LORA["rank"],
        "lora_alpha": LORA["alpha"],
        "lora_dropout": LORA["dropout"],
        "lora_target": "all",  # every linear layer but the head, like "all-linear"
        "learning_rate": 1e-3,
        "per_device_train_batch_size": batch,
        "max_steps": steps,
        "output_dir": str(out / "run"),
        "overwrite_output_dir": True,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "plot_loss": False,
        "bf16": False,  # fp32, as the other sides on this CPU
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "include_num_input_tokens_seen": "non_padding",  # the tokens our side counts
    }
    start = time.perf_counter()
    run_exp(args, callbacks=[step_clock(TrainerCallback, times), Seen()])
    return clock_result(times, trainer_state.get("tokens", 0), time.perf_counter() - start)


def side_main(args: argparse.Namespace) -> None:
    if args.side == "llamafactory":
        result = run_llamafactory(Path(args.data), Path(args.out), args.steps, args.batch, args.model)
        side_result(result)
        return
    from openrecipe.cli.quiet import quiet_libraries

    quiet_libraries()
    if args.side.startswith("ours"):
        compiled = args.side == "ours-compiled"
        result = run_ours(
            Path(args.data), Path(args.out), args.steps, args.batch, compiled, micro_tokens=args.micro_batch_tokens
        )
    elif args.side.startswith("scale-"):
        result = run_ours(
            Path(args.data), Path(args.out), args.steps, args.batch, False, args.side[6:], args.micro_batch_tokens
        )
    else:
        result = run_trl(Path(args.data), Path(args.out), args.steps, args.batch, args.side == "trl")
    side_result(result)


def side_result(result: dict) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["peak_rss_gib"] = usage.ru_maxrss / 2**20
    result["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 1)  # the whole process: loading included
    if int(os.environ.get("RANK", "0")) == 0:
        print("RESULT " + json.dumps(result), flush=True)


def run_side(side: str, data: Path, out: Path, args: argparse.Namespace, processes: int = 1) -> dict | None:
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", f"--nproc_per_node={processes}", "--master_port=29611"]
    extra = []
    if side == "llamafactory":
        from openrecipe.models.default import ensure_default_model

        python = llamafactory_python()
        if not python.exists():
            print(f"{side} skipped: no {python}; make it with `make bench-llamafactory-env`", flush=True)
            return None
        launcher, extra = [str(python)], ["--model", str(ensure_default_model())]
    command = [*launcher, __file__, "--side", side, "--data", str(data), "--out", str(out), *extra]
    command += ["--steps", str(args.steps), "--batch", str(args.batch)]
    if side != "llamafactory":
        command += ["--micro-batch-tokens", args.micro_batch_tokens]
    started = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True)
    line = next((row for row in process.stdout.splitlines() if row.startswith("RESULT ")), None)
    if line is None:
        print(f"{side} failed (exit {process.returncode}):\n{process.stderr[-3000:]}")
        return None
    result = json.loads(line[7:])
    result["process_s"] = round(time.perf_counter() - started, 1)
    return result


def machine() -> dict:
    import torch

    from openrecipe.models.precision import cpu_precision_probe

    probe = cpu_precision_probe()
    flags = Path("/proc/cpuinfo").read_text().split()
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return {
        "cpu": probe.machine,
        "flags": [flag for flag in wanted if flag in flags],
        "threads": torch.get_num_threads(),
        "fp32_gflops": probe.fp32_gflops,
        "bf16_gflops": probe.bf16_gflops,
        "precision": probe.best,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def mfu(tokens_per_s: float, tokens_per_row: float, peak_gflops: float) -> float:
    """LoRA FLOPs per token (4N + 12·L·s·d, train/flops.py) × tokens/s over the measured matmul peak."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from openrecipe.models.default import ensure_default_model
    from openrecipe.train.flops import flops_per_token

    config = AutoConfig.from_pretrained(str(ensure_default_model()))
    with torch.device("meta"):
        params = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    per_token = flops_per_token(params, config.num_hidden_layers, int(tokens_per_row), config.hidden_size, False)
    return tokens_per_s * per_token / (peak_gflops * 1e9)


def compare(args: argparse.Namespace, data: Path, tmp: Path, info: dict) -> None:
    results = {}
    for side in args.sides.split(","):
        label = SIDES[side]
        result = run_side(side, data, tmp / side, args)
        if result is None:
            continue
        peak = info["bf16_gflops"] if info["precision"] == "bf16" else info["fp32_gflops"]
        row_tokens = result["tokens_per_step"] / args.batch
        result["mfu"] = round(mfu(result["tokens_per_s"], row_tokens, peak), 3)
        # The same against CPU time: the peak was measured on all `threads`, so one CPU-second holds 1/threads.
        result["mfu_cpu_time"] = round(mfu(result["tokens_per_cpu_s"], row_tokens, peak / info["threads"]), 3)
        results[side] = result
        print(f"{label}: {json.dumps(result)}", flush=True)
    print(f"load average after: {[round(x, 2) for x in os.getloadavg()]}")
    for ours in ("ours", "ours-compiled"):
        for peer in ("trl", "trl-no-checkpointing", "llamafactory"):
            if ours in results and peer in results:
                a, b = results[ours], results[peer]
                print(
                    f"{SIDES[ours]} vs {SIDES[peer]}: tokens/s {a['tokens_per_s'] / b['tokens_per_s']:.2f}x, "
                    f"tokens per CPU-second {a['tokens_per_cpu_s'] / b['tokens_per_cpu_s']:.2f}x, "
                    f"peak RSS {a['peak_rss_gib'] / b['peak_rss_gib']:.2f}x"
                )
    if "trl" in results:
        needed = 3 * results["trl"]["mfu_cpu_time"]
        print(f"3x TRL's tokens/s needs MFU {needed:.2f} (CPU time) of the measured {info['precision']} matmul peak")


def scaling(args: argparse.Namespace, data: Path, tmp: Path, strategy: str, processes: int) -> None:
    """Same job (global batch, steps) on one process and on `processes`: efficiency = speed-up / processes."""
    one = run_side(f"scale-{strategy}", data, tmp / "one", args)
    many = run_side(f"scale-{strategy}", data, tmp / "many", args, processes)
    if one is None or many is None:
        return
    print(f"1 process: {json.dumps(one)}")
    print(f"{processes} processes ({strategy}): {json.dumps(many)}")
    speedup = many["tokens_per_s"] / one["tokens_per_s"]
    print(
        f"{strategy} scaling on {processes} processes: {speedup:.2f}x the tokens/s of one, "
        f"efficiency {speedup / processes:.2f} (1.00 = linear); load average {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--ddp", type=int, metavar="N", help="scaling of N DDP processes against one")
    parser.add_argument("--fsdp", type=int, metavar="N", help="scaling of N FSDP2 processes against one")
    parser.add_argument("--zero", type=int, metavar="N", help="scaling of N DeepSpeed ZeRO processes against one")
    parser.add_argument("--zero-stage", type=int, choices=[2, 3], default=2, help="the ZeRO stage of --zero")
    parser.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated, from: {', '.join(SIDES)}")
    parser.add_argument("--side", choices=[*SIDES, "scale-ddp", "scale-fsdp", "scale-zero2", "scale-zero3"])
    parser.add_argument("--data")
    parser.add_argument("--out")
    parser.add_argument("--model", help="the default model's folder (the llamafactory side cannot resolve it)")
    parser.add_argument(
        "--micro-batch-tokens",
        default="auto",
        help="our train.micro_batch_tokens: auto (256 on CPU), none (whole micro-batches) or a number",
    )
    args = parser.parse_args()
    if args.side:
        side_main(args)
        return
    info = machine()
    print(f"machine: {json.dumps(info)}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        data = tmp / "data.jsonl"
        examples(data)
        if args.ddp or args.fsdp or args.zero:
            strategy = "ddp" if args.ddp else "fsdp" if args.fsdp else f"zero{args.zero_stage}"
            scaling(args, data, tmp, strategy, args.ddp or args.fsdp or args.zero)
        else:
            compare(args, data, tmp, info)


if __name__ == "__main__":
    main()
