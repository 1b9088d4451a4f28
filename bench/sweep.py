"""Sweep throughput and the ladder's prediction errors.

Part 1 runs `openrecipe sweep` on a tiny continued-pretraining recipe (a 2-layer Llama built here, with
the default model's tokenizer) with 1 and then 2 workers, and prints trials per hour and where each
trial's time goes: training itself, the rest of the run (loading, tokenizing, saving), and the sweep's
own bookkeeping (process start, imports, study storage).
Part 2 prints the demo ladder's prediction errors from its ladder.json (run the demo first:
`openrecipe ladder recipes/ladder-demo.yaml --out ladders/demo`), and a fine-tuning ladder's check of
L(D) on its largest share when given one.

    .venv/bin/python bench/sweep.py --trials 4 --ladder ladders/demo
    .venv/bin/python bench/sweep.py --trials 0 --ladder ladders/demo --ladder ladders/finetune
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPE = """name: bench-sweep
base_model: model
stages:
  - id: cpt
    kind: cpt
    domain: [{path: text.txt}]
    replay_ratio: 0.0
    block_size: 32
    train: {method: full, max_steps: 8, batch_size: 4, eval_fraction: 0.2, eval_every_steps: 4}
"""


def build(folder: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from openrecipe.models.default import ensure_default_model

    tokenizer = AutoTokenizer.from_pretrained(str(ensure_default_model()))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    rng = random.Random(0)
    words = Path(__file__).read_text().split()
    (folder / "text.txt").write_text("\n\n".join(" ".join(rng.choices(words, k=80)) for _ in range(60)))
    (folder / "recipe.yaml").write_text(RECIPE)
    return folder / "recipe.yaml"


def sweep(recipe: Path, workers: int, trials: int) -> dict:
    out = recipe.parent / f"sweep-{workers}"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "openrecipe", "sweep", str(recipe), "--stage", "cpt",
         "--space", "train.learning_rate=loguniform(1e-4,1e-2)", "--trials", str(trials),
         "--pruner", "none", "--workers", str(workers), "--out", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    result = json.loads((out / "sweep.json").read_text())
    timing, complete = result["timing"], result["trials"]["complete"]
    return {
        "workers": workers,
        "trials": complete,
        "elapsed_s": round(elapsed, 1),
        "trials_per_hour": round(3600 * complete / elapsed, 1),
        "train_s_per_trial": round(timing["train_seconds"] / complete, 2),
        "run_overhead_s_per_trial": round((timing["run_seconds"] - timing["train_seconds"]) / complete, 2),
        "sweep_overhead_s_per_trial": round((timing["wall_seconds"] - timing["run_seconds"]) / complete, 2),
    }


def ladder_table(folder: Path) -> None:
    path = folder / "ladder.json"
    if not path.is_file():
        print(f"\n(no {path}: run `openrecipe ladder recipes/ladder-demo.yaml --out {folder}` first)")
        return
    result = json.loads(path.read_text())
    if result.get("kind") == "finetune":
        finetune_ladder_table(result)
        return
    prediction, check, budget = result["prediction"], result["check"], result["budget"]
    print("\n| quantity | predicted | actual | error | goal |")
    print("|---|---|---|---|---|")
    low, high = prediction["loss_interval"]
    print(
        f"| final loss | {prediction['loss']:.4f} [{low:.4f}, {high:.4f}] | {check['actual_loss']:.4f} | "
        f"{100 * check['loss_error_relative']:+.2f}% | within 2% |"
    )
    print(
        f"| learning rate | {prediction['learning_rate']:.3g} | grid best {check['best_grid_learning_rate']:.3g} | "
        f"{100 * check['predicted_lr_loss_above_best_relative']:+.2f}% loss | within 1% |"
    )
    print(f"| ladder compute | - | {100 * budget['fraction_flops']:.1f}% of the predicted rung | - | at most 20% |")
    fit = prediction["fit"]
    checks = (("leave_one_out", "leave-one-out (fitted rungs)"), ("largest_held_out", "largest size held out"))
    for name, label in checks:
        if name in fit and fit[name]["rms"] is not None:
            errors = f"rms {100 * fit[name]['rms']:.2f}%, worst {100 * fit[name]['max_abs']:.2f}%"
            print(f"| {label} | - | - | {errors} | - |")
    print(
        f"\nthe predicted rung is {prediction['compute_multiple_of_largest_rung']:.1f}x the largest fitted rung's "
        f"compute; actual loss inside the 95% interval: {check['inside_interval']}"
    )
    print(
        f"counted in the ladder's compute: {budget.get('counted', 'sweep, budget and noise runs')}; not counted: "
        f"{budget.get('not_counted', 'the check')}"
    )
    from openrecipe.ladder.report import whole_ladder_line

    print(
        f"{whole_ladder_line(budget)}; ladder runs {budget['ladder_seconds']:.0f} s, check runs "
        f"{budget['check_seconds']:.0f} s"
    )
    if budget.get("ladder_cpu_seconds") is not None and budget.get("check_cpu_seconds") is not None:
        print(
            f"CPU time of the rungs (process time; what they cost on a shared machine): ladder "
            f"{budget['ladder_cpu_seconds']:.0f} s, check {budget['check_cpu_seconds']:.0f} s"
        )


def finetune_ladder_table(result: dict) -> None:
    """A fine-tuning ladder's L(D) check per rank: the largest share predicted from the smaller ones."""
    from openrecipe.ladder.finetune_analysis import drops_text
    from openrecipe.ladder.finetune_report import budget_line

    print("\n| rank | largest share: predicted | actual | error | loss drop per e-fold of rows |")
    print("|---|---|---|---|---|")
    for law in result["data_laws"]:
        check = law.get("check")
        if check is None:
            print(f"| {law['rank']} | - | - | - (needs 4 shares) | - |")
            continue
        print(
            f"| {law['rank']} | {check['predicted']:.4f} | {check['actual']:.4f} | "
            f"{100 * check['error_relative']:+.2f}% | {drops_text(law)} |"
        )
    if "data_law" in result["verdicts"]:
        print(f"\n{result['verdicts']['data_law']['text']}")
    print(budget_line(result["budget"]))


def machine() -> str:
    """CPU flags that matter for fp32/bf16 matmuls, and the load average: every figure here depends on them."""
    import os

    flags = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags = {f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "amx"))}
                break
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return f"{os.cpu_count()} CPUs, flags {' '.join(sorted(flags)) or '-'}; load average {load}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="per sweep; 0 skips the sweeps (part 1)")
    parser.add_argument(
        "--ladder",
        type=Path,
        action="append",
        help="a finished ladder's folder, pretraining or fine-tuning (repeatable; default ladders/demo)",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}")
    if args.trials > 0:
        with tempfile.TemporaryDirectory() as folder:
            recipe = build(Path(folder))
            rows = [sweep(recipe, workers, args.trials) for workers in (1, 2)]
        columns = list(rows[0])
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns))
        for row in rows:
            print("| " + " | ".join(str(row[c]) for c in columns) + " |")
        print(f"machine after the sweeps: {machine()}")
    for folder in args.ladder or [Path("ladders/demo")]:
        ladder_table(folder)


if __name__ == "__main__":
    main()
