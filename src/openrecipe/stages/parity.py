"""`parity` stage: run one fixed probe set through every artifact of the run and compare each with the
reference model: exact-match of greedy replies, next-token KL on held-out text, perplexity delta, size
against BF16 and against the reference, and decode speed in the engine that serves the artifact (llama.cpp
for GGUF files, transformers otherwise). A regression past a threshold fails the stage naming the artifact
and the metric."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from openrecipe.config.base import StrictModel
from openrecipe.config.references import InputPath, ModelReference
from openrecipe.errors import OpenRecipeError
from openrecipe.provenance.records import artifact_bytes
from openrecipe.stages.base import FILE, StageConfig, StageContext, StageResult, stage_kind
from openrecipe.utils.fs import atomic_write_json, atomic_write_text


class ArtifactSpec(StrictModel):
    name: str
    model: ModelReference


class Thresholds(StrictModel):
    min_exact_match: float = Field(0.25, ge=0, le=1)
    max_perplexity_increase_pct: float = Field(60.0, ge=0)
    max_mean_kl: float = Field(1.0, ge=0)


class ParityStage(StageConfig):
    kind: Literal["parity"] = "parity"
    reference: ModelReference = Field(description="The model every artifact should still behave like (e.g. stage:sft)")
    artifacts: list[ArtifactSpec] = Field(min_length=1)
    prompts: list[str] = Field(default_factory=lambda: ["What is the capital of France?"])
    identity_prompts: bool = Field(True, description="Add held-out identity questions")
    heldout: InputPath | None = Field(None, description="Held-out text for KL and perplexity")
    heldout_tokens: int = Field(
        1024,
        ge=16,
        description="KL and perplexity use the held-out text's first N tokens, paragraph by paragraph (each pass "
        "runs once per artifact; INT8 weight-only kernels read ~60 tokens/s on a 2-core CPU)",
    )
    max_new_tokens: int = Field(32, ge=1)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    on_regression: Literal["fail", "warn"] = "fail"

    def artifact_kinds(self) -> dict[str, str]:
        return {"parity": FILE, "parity_md": FILE}


def _size_bytes(path: str) -> int | None:
    target = Path(path)
    return artifact_bytes(target) if target.exists() else None


def heldout_rows(tokenizer, text: str, *, budget: int, row_tokens: int = 256) -> list[list[int]]:
    """The held-out text's paragraphs as token rows (each at most `row_tokens`), until `budget` tokens."""
    rows: list[list[int]] = []
    left = budget
    for part in text.split("\n\n"):
        if left < 2:
            break
        if part.strip():
            ids = tokenizer(part, add_special_tokens=False)["input_ids"][: min(row_tokens, left)]
            if len(ids) > 1:
                rows.append(ids)
                left -= len(ids)
    return rows


def _measure(loaded, conversations, max_new_tokens: int) -> dict[str, Any]:
    """Greedy replies to every prompt in one batch (as the transformers engine batches concurrent requests), and
    decode tokens/s at batch 1 on the prompt with the longest reply (prefill included, as for llama.cpp)."""
    from openrecipe.models.generation import GenerationSettings, generate_texts

    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    replies = generate_texts(loaded, conversations, settings, batch_size=len(conversations))
    lengths = [len(loaded.tokenizer(reply, add_special_tokens=False)["input_ids"]) + 1 for reply in replies]
    longest = max(range(len(replies)), key=lengths.__getitem__)
    start = time.perf_counter()
    alone = generate_texts(loaded, [conversations[longest]], settings, batch_size=1)[0]
    seconds = time.perf_counter() - start
    tokens = len(loaded.tokenizer(alone, add_special_tokens=False)["input_ids"]) + 1
    return {"replies": replies, "decode_tokens_per_s": tokens / seconds}


def _llama_cpp_replies(path: str, conversations, max_new_tokens: int, log: Path) -> dict[str, Any]:
    """Greedy replies at batch 1 in llama.cpp, the engine `serve --engine llamacpp` runs a GGUF with (its
    embedded chat template included), and decode tokens/s on the longest reply (prefill included); what ggml
    prints while loading goes to `log`."""
    from openrecipe.models.llamacpp import load_llama_cpp
    from openrecipe.utils.cpus import physical_cores
    from openrecipe.utils.native_output import native_output_to

    replies: list[str] = []
    with native_output_to(log):
        threads = physical_cores()  # as many cores as torch uses for the transformers artifacts beside it
        llama = load_llama_cpp().Llama(
            model_path=path, n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False
        )
        try:
            timings = []
            for conversation in conversations:
                start = time.perf_counter()
                out = llama.create_chat_completion(messages=conversation, max_tokens=max_new_tokens, temperature=0)
                timings.append((out["usage"]["completion_tokens"], time.perf_counter() - start))
                replies.append((out["choices"][0]["message"]["content"] or "").strip())
        finally:
            llama.close()
    tokens, seconds = max(timings)
    return {"replies": replies, "decode_tokens_per_s": tokens / seconds if seconds else float("nan")}


@stage_kind(ParityStage, "Export parity: does every artifact still behave like the trained model?")
def run_parity(context: StageContext, config: ParityStage) -> StageResult:
    from openrecipe.data.identity import identity_eval_items
    from openrecipe.models.generation import build_messages
    from openrecipe.models.loading import load_model
    from openrecipe.models.scoring import token_log_probs

    prompts = list(config.prompts)
    if config.identity_prompts and context.identity is not None:
        prompts += [i.question for i in identity_eval_items(context.identity) if i.negative_of is None][:4]
    conversations = [build_messages(p, context.system_prompt) for p in prompts]
    reference_path = context.model_location(config.reference)
    reference = load_model(context.resolve_model(config.reference), dtype="float32")  # with the recipe's template
    text = context.resolve_path(config.heldout).read_text(encoding="utf-8") if config.heldout else ""
    text_ids = heldout_rows(reference.tokenizer, text, budget=config.heldout_tokens)
    base = _measure(reference, conversations, config.max_new_tokens)
    base["log_probs"] = token_log_probs(reference, text_ids)
    bf16_bytes = 2 * sum(p.numel() for p in reference.model.parameters())  # tied weights counted once
    del reference
    rows: list[dict[str, Any]] = []
    reference_nll = sum(
        -float(lp.gather(-1, torch.tensor(ids[1:])[:, None]).sum())
        for lp, ids in zip(base["log_probs"], text_ids, strict=True)
    )
    count = sum(len(ids) - 1 for ids in text_ids)
    reference_ppl = math.exp(reference_nll / count) if count else float("nan")
    rows.append(
        {
            "artifact": "reference",
            "model": reference_path,
            "exact_match": 1.0,
            "mean_kl": 0.0,
            "perplexity": reference_ppl,
            "perplexity_delta_pct": 0.0,
            "size_bytes": _size_bytes(reference_path),
            "decode_tokens_per_s": base["decode_tokens_per_s"],
            "decode_engine": "transformers",
        }
    )
    for spec in config.artifacts:
        path = context.model_location(spec.model)
        loaded = load_model(context.resolve_model(spec.model), dtype="float32")
        measured, engine = None, "transformers"
        if path.endswith(".gguf"):
            # A GGUF is judged by what llama.cpp, which serves it, replies; transformers' dequantized copy
            # gives the next-token distributions for KL and perplexity.
            try:
                measured = _llama_cpp_replies(
                    path, conversations, config.max_new_tokens, context.stage_dir / "native.log"
                )
                engine = "llama.cpp"
            except OpenRecipeError:
                engine = "transformers (llama.cpp not installed)"
        measured = measured or _measure(loaded, conversations, config.max_new_tokens)
        measured["log_probs"] = token_log_probs(loaded, text_ids)
        matches = sum(a == b for a, b in zip(measured["replies"], base["replies"], strict=True)) / len(prompts)
        kl_total, nll = 0.0, 0.0
        for ref_lp, art_lp, ids in zip(base["log_probs"], measured["log_probs"], text_ids, strict=True):
            kl_total += float((ref_lp.exp() * (ref_lp - art_lp)).sum())
            nll -= float(art_lp.gather(-1, torch.tensor(ids[1:])[:, None]).sum())
        ppl = math.exp(nll / count) if count else float("nan")
        speed = measured["decode_tokens_per_s"]
        rows.append(
            {
                "artifact": spec.name,
                "model": path,
                "exact_match": matches,
                "mean_kl": kl_total / count if count else float("nan"),
                "perplexity": ppl,
                "perplexity_delta_pct": 100 * (ppl / reference_ppl - 1) if count else float("nan"),
                "size_bytes": _size_bytes(path),
                "decode_tokens_per_s": speed,
                "decode_engine": engine,
                "replies": measured["replies"],
            }
        )
        del loaded
    reference_size = rows[0]["size_bytes"] or 0
    lines = [
        "| artifact | exact match | mean KL | perplexity | Δ ppl | size | vs BF16 | vs reference | decode tok/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        size = row["size_bytes"] or 0
        row["size_ratio"] = size / reference_size if reference_size else None
        row["size_ratio_bf16"] = size / bf16_bytes if bf16_bytes else None
        lines.append(
            f"| {row['artifact']} | {100 * row['exact_match']:.0f}% | {row['mean_kl']:.4f} | "
            f"{row['perplexity']:.2f} | {row['perplexity_delta_pct']:+.1f}% | {size / 1e6:.0f} MB | "
            f"{row['size_ratio_bf16'] or 0:.2f}x | {row['size_ratio'] or 0:.2f}x | "
            f"{row['decode_tokens_per_s']:.1f} ({row['decode_engine']}) |"
        )
    lines += [
        "",
        f"BF16 = {bf16_bytes / 1e6:.0f} MB: the reference's parameters at 2 bytes each. Exact match and decode "
        "speed (batch 1, the prompt with the longest reply, prefill included) come from the engine that serves "
        "each artifact (llama.cpp for GGUF); KL and perplexity from "
        f"transformers, on the held-out text's first {count} predicted tokens (the eval stage's perplexity "
        "uses all of it, so the two can differ).",
    ]
    atomic_write_json(
        context.stage_dir / "parity.json",
        {"prompts": prompts, "reference_replies": base["replies"], "rows": rows},
    )
    atomic_write_text(context.stage_dir / "parity.md", "\n".join(lines) + "\n")
    for line in lines:
        context.console.print(line, markup=False, highlight=False)
    problems = []
    limits = config.thresholds
    for row in rows[1:]:
        if row["exact_match"] < limits.min_exact_match:
            problems.append(
                f"{row['artifact']}: exact match {100 * row['exact_match']:.0f}% < {100 * limits.min_exact_match:.0f}%"
            )
        if row["perplexity_delta_pct"] > limits.max_perplexity_increase_pct:
            problems.append(
                f"{row['artifact']}: perplexity +{row['perplexity_delta_pct']:.1f}% > "
                f"+{limits.max_perplexity_increase_pct}%"
            )
        if row["mean_kl"] > limits.max_mean_kl:
            problems.append(f"{row['artifact']}: mean KL {row['mean_kl']:.3f} > {limits.max_mean_kl}")
    if problems and config.on_regression == "fail":
        raise OpenRecipeError(
            "export parity regression: " + "; ".join(problems),
            fix="inspect parity.md; relax thresholds or drop the artifact",
        )
    for problem in problems:
        context.console.print(f"[yellow]parity warning: {problem}[/yellow]")
    return StageResult(
        metrics={
            "rows": [{k: v for k, v in r.items() if k != "replies"} for r in rows],
            "regressions": problems,
        },
        artifacts={
            "parity": str(context.stage_dir / "parity.json"),
            "parity_md": str(context.stage_dir / "parity.md"),
        },
    )
