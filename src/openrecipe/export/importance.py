"""Importance matrix for llama.cpp's quantizer, measured with the model's own forward pass in PyTorch.

Why by hand: llama.cpp computes it with its `llama-imatrix` tool, which llama-cpp-python does not ship; the
quantizer itself accepts the matrix as plain (tensor name, floats) pairs. The values are what that tool
collects: for every linear layer, the mean square of each input column over the calibration tokens, so
rounding error on columns that carry large activations is weighted more. Tensor names come from the F16
file itself through gguf's name table, so every architecture the converter writes is covered.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from openrecipe.errors import OpenRecipeError
from openrecipe.export.gguf_types import DEFAULT_CALIBRATION_TOKENS
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


class _Enough(Exception):
    """Raised by the output layer's pre-hook: its input is all the matrix needs, not the vocabulary logits."""


def calibration_batches(tokenizer, texts: list[str], *, context: int, max_tokens: int, rows: int = 8):
    """Each text on its own from position 0 (as the model sees a conversation), cut at `context` tokens; when
    they hold more than `max_tokens`, every k-th text with k the smallest stride that fits the budget, so the
    whole list is spanned and each source listed contributes; texts of similar length batched together,
    right-padded, with their masks."""
    every = [row for text in texts if len(row := tokenizer(text, add_special_tokens=False)["input_ids"][:context]) > 1]
    stride = max(1, math.ceil(sum(len(row) for row in every) / max_tokens))
    ids: list[list[int]] = []
    taken = 0
    for row in every[::stride]:
        ids.append(row)
        taken += len(row)
        if taken >= max_tokens:
            break
    ids.sort(key=len)
    batches = []
    for start in range(0, len(ids), rows):
        group = ids[start : start + rows]
        width = len(group[-1])
        tokens = torch.zeros((len(group), width), dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.bool)
        for index, row in enumerate(group):
            tokens[index, : len(row)] = torch.tensor(row)
            mask[index, : len(row)] = True
        batches.append((tokens, mask))
    return batches, taken


def importance_matrix(
    folder: Path,
    texts: list[str],
    *,
    gguf_file: Path,
    max_tokens: int = DEFAULT_CALIBRATION_TOKENS,
    context: int = 512,
    batch_rows: int = 8,
):
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

    current: dict[str, torch.Tensor] = {}  # the mask of the batch being run: padding is not calibration text

    def collect(key: str, inputs: tuple) -> None:
        values = inputs[0].detach()
        mask = current["mask"]
        rows = (values[mask] if values.shape[:2] == mask.shape else values.reshape(-1, values.shape[-1])).double()
        sums[key] = sums.get(key, 0) + (rows * rows).sum(0)
        counts[key] = counts.get(key, 0) + rows.shape[0]

    output = model.get_output_embeddings()
    hooks = []
    for module_name, module in model.named_modules():
        gguf_name = names.get(f"{module_name}.weight")
        if isinstance(module, torch.nn.Linear) and gguf_name is not None and module is not output:
            hooks.append(module.register_forward_hook(lambda _m, inputs, _o, key=gguf_name: collect(key, inputs)))
    if output is not None:
        # The vocabulary projection is the largest matmul and its logits are never used: read its input, stop.
        output_name = next((names.get(f"{n}.weight") for n, m in model.named_modules() if m is output), None)

        def enough(_module, inputs):
            if output_name is not None:
                collect(output_name, inputs)
            raise _Enough

        hooks.append(output.register_forward_pre_hook(enough))
    batches, seen = calibration_batches(tokenizer, texts, context=context, max_tokens=max_tokens, rows=batch_rows)
    try:
        with torch.no_grad():
            for tokens, mask in batches:
                current["mask"] = mask
                try:
                    model(input_ids=tokens, attention_mask=mask.long())
                except _Enough:
                    pass
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
