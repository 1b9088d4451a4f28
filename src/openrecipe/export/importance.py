"""Importance matrix for llama.cpp's quantizer, measured with the model's own forward pass in PyTorch.

Why by hand: llama.cpp computes it with its `llama-imatrix` tool, which llama-cpp-python does not ship; the
quantizer itself accepts the matrix as plain (tensor name, floats) pairs. The values are what that tool
collects: for every linear layer, the mean square of each input column over the calibration tokens, so
rounding error on columns that carry large activations is weighted more. Tensor names come from the F16
file itself through gguf's name table, so every architecture the converter writes is covered.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from openrecipe.errors import OpenRecipeError
from openrecipe.models.gguf_header import check_gguf


def calibration_texts(records, tokenizer) -> list[str]:
    """Chat records rendered with the model's template (what it will see), text records as they are."""
    texts = []
    for record in records:
        if record.messages is not None:
            texts.append(tokenizer.apply_chat_template(record.messages, tokenize=False))
        elif record.text:
            texts.append(record.text)
    return texts


def gguf_names(model, gguf_file: Path) -> dict[str, str]:
    """HF linear-layer name → the name of its tensor in `gguf_file` (llama.cpp's own name table, gguf-py)."""
    import gguf

    header = check_gguf(gguf_file)
    architectures = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}
    if header.architecture not in architectures:
        return {}
    table = gguf.get_tensor_name_map(architectures[header.architecture], model.config.num_hidden_layers)
    names = {}
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            mapped = table.get_name(f"{module_name}.weight", try_suffixes=(".weight",))
            if mapped in header.tensors:
                names[f"{module_name}.weight"] = mapped
            elif (
                module_name == "lm_head"
                and "token_embd.weight" in header.tensors
                and "output.weight" not in header.tensors
            ):
                names["lm_head.weight"] = "token_embd.weight"  # a tied output matrix is stored once, as the embedding
    return names


def importance_matrix(folder: Path, texts: list[str], *, gguf_file: Path, max_tokens: int = 32768, context: int = 512):
    """{GGUF tensor name: float32 vector over input columns} for every linear layer found in `gguf_file`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not texts:
        raise OpenRecipeError(
            "no calibration text for the importance matrix", fix="list data files under `calibration:`"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    model.eval()
    names = gguf_names(model, gguf_file)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    hooks = []
    for module_name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        gguf_name = names.get(f"{module_name}.weight")
        if gguf_name is None:
            continue

        def collect(_module, inputs, _output, key=gguf_name):
            rows = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).double()
            sums[key] = sums.get(key, 0) + (rows * rows).sum(0)
            counts[key] = counts.get(key, 0) + rows.shape[0]

        hooks.append(module.register_forward_hook(collect))
    seen = 0
    try:
        with torch.no_grad():
            for text in texts:
                ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][:, :context]
                if ids.shape[1] < 2:
                    continue
                model(input_ids=ids)
                seen += ids.shape[1]
                if seen >= max_tokens:
                    break
    finally:
        for hook in hooks:
            hook.remove()
    if not sums:
        raise OpenRecipeError("the calibration text produced no tokens", fix="give it longer texts")
    matrix = {key: (sums[key] / counts[key]).float().numpy() for key in sums}
    for key, values in matrix.items():
        if not np.isfinite(values).all():
            raise OpenRecipeError(f"non-finite activations in {key} while measuring importance")
    return matrix, seen
