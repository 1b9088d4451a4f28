"""Quantized variants of the default model side by side: size ratio, perplexity delta and decode tokens/s
vs BF16, with every GGUF decoded by llama.cpp next to the transformers path on the same weights.

    .venv/bin/python bench/quantize.py
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PROMPT = [{"role": "user", "content": "Tell me about the water cycle."}]


def held_out_texts() -> list[str]:
    texts = []
    for name in ("heldout.txt", "replay.txt"):
        texts += [p for p in (ROOT / "data/general" / name).read_text().split("\n\n") if p.strip()]
    return texts


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.glob("*.safetensors"))


def hf_row(name: str, folder: Path, dtype: str, texts: list[str]) -> dict:
    from openrecipe.models.generation import GenerationSettings, build_messages, generate_texts
    from openrecipe.models.loading import load_model
    from openrecipe.models.scoring import perplexity

    loaded = load_model(str(folder), dtype=dtype)
    ppl = perplexity(loaded, texts)["perplexity"]
    generate_texts(loaded, [build_messages("hi")], GenerationSettings(max_new_tokens=4))
    start = time.perf_counter()
    reply = generate_texts(loaded, [PROMPT], GenerationSettings(max_new_tokens=64))[0]
    seconds = time.perf_counter() - start
    tokens = len(loaded.tokenizer(reply, add_special_tokens=False)["input_ids"]) + 1
    return {"variant": name, "engine": "transformers", "size": size_of(folder), "ppl": ppl,
            "tok_s": tokens / seconds}


def llama_row(name: str, path: Path, texts: list[str], tokenizer) -> dict:
    from llama_cpp import Llama

    llama = Llama(model_path=str(path), n_ctx=512, logits_all=True, verbose=False)
    nll, count = 0.0, 0
    try:
        for text in texts:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"][:256]
            if len(ids) < 2:
                continue
            llama.reset()
            llama.eval(ids)
            logits = np.asarray(llama.scores[: len(ids) - 1], dtype=np.float64)
            logits -= logits.max(axis=-1, keepdims=True)
            log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
            nll -= float(log_probs[np.arange(len(ids) - 1), ids[1:]].sum())
            count += len(ids) - 1
        llama.reset()
        start = time.perf_counter()
        out = llama.create_chat_completion(messages=PROMPT, max_tokens=64, temperature=0)
        seconds = time.perf_counter() - start
        tokens = out["usage"]["completion_tokens"]
    finally:
        llama.close()
    return {"variant": name, "engine": "llama.cpp", "size": path.stat().st_size, "ppl": math.exp(nll / count),
            "tok_s": tokens / seconds}


def main() -> None:
    from openrecipe.cli.quiet import quiet_libraries

    quiet_libraries()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from openrecipe.export.gguf_export import export_gguf
    from openrecipe.models.default import ensure_default_model
    from openrecipe.quantize.torchao_backend import quantize_folder

    source = ensure_default_model()
    texts = held_out_texts()
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bf16 = work / "bf16"
        AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.bfloat16).save_pretrained(str(bf16))
        tokenizer.save_pretrained(str(bf16))
        rows = [hf_row("bf16", bf16, "bfloat16", texts)]
        for method in ("int8", "int4"):
            rows.append(hf_row(method, quantize_folder(source, work / method, method), "auto", texts))
        files = export_gguf(source, work / "gguf", ["f16", "q8_0", "q4_0", "q4_k_m"], name="default")
        for qtype, info in files.items():
            path = Path(info["path"])
            rows.append(hf_row(f"gguf {qtype}", path, "float32", texts))
            try:
                rows.append(llama_row(f"gguf {qtype}", path, texts, tokenizer))
            except ImportError:
                print("llama-cpp-python is not installed: skipping the llama.cpp rows")
    base = rows[0]
    print(f"{'variant':<14} {'engine':<13} {'size MB':>8} {'size ratio':>10} {'ppl':>8} {'Δ ppl':>8} {'tok/s':>7}")
    for row in rows:
        print(f"{row['variant']:<14} {row['engine']:<13} {row['size'] / 1e6:>8.1f} {row['size'] / base['size']:>10.2f} "
              f"{row['ppl']:>8.2f} {100 * (row['ppl'] / base['ppl'] - 1):>+7.1f}% {row['tok_s']:>7.1f}")


if __name__ == "__main__":
    main()
