"""INT8 and INT4 weight-only quantization with torchao, chosen from measurements on CPU:

- int8: `Int8WeightOnlyConfig` with per-group scales (group 128, 64 or 32: the largest that divides every
  linear layer's input size; per-row when none does). Measured on the default model against BF16 on the
  project's held-out text (data/general/heldout.txt): groups of 64 cost +0.16% perplexity at 0.64x the size,
  embeddings counted. Runs on CPU, saves to safetensors, reloads. Its cost: torchao has no fused CPU kernel
  for grouped int8, so decoding at batch 1 runs ~6 tok/s where per-row runs ~15.
- int8_row: the same with one scale per output row — torch's fused int8 CPU kernel, +1.2% perplexity at
  0.61x. Pick it when transformers decode speed on CPU matters more than the last percent; for CPU serving
  the GGUF q8_0 export through llama.cpp is faster than both (~43 tok/s, −0.1%).
- int4: `IntxWeightOnlyConfig(int4, group 32)` — the only torchao INT4 that runs on CPU
  (`Int4WeightOnlyConfig` needs CUDA); it costs ~+35% perplexity on a 135M model. For 4-bit deployment on
  CPU the GGUF q4_k_m export (llama.cpp kernels, ~+4%) is the better path; this one exists for GPU-less
  transformers serving and is measured in the parity table like every other artifact.
- Not used: bitsandbytes 4-bit on CPU writes a corrupt checkpoint once a forward pass has run; quanto
  qint4 runs only under no_grad and costs +51%.
- Tied input/output embeddings stay in the model's dtype: `untie_embedding_weights` would quantize them,
  but the saved checkpoint then lost `lm_head` on reload.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch

from openrecipe.errors import OpenRecipeError
from openrecipe.registry import Registry
from openrecipe.utils.fs import atomic_directory

QuantMethod = Literal["int8", "int8_row", "int4"]
INT8_GROUP_SIZES = (128, 64, 32)


def linear_input_sizes(config: dict[str, Any]) -> set[int]:
    """Input sizes of a decoder's linear layers, read from its config.json (attention, MLP)."""
    hidden = config["hidden_size"]
    heads = config.get("num_attention_heads", 1)
    head_dim = config.get("head_dim") or hidden // heads
    return {hidden, heads * head_dim, config.get("intermediate_size", hidden)}


def int8_group_size(config: dict[str, Any]) -> int | None:
    sizes = linear_input_sizes(config)
    return next((group for group in INT8_GROUP_SIZES if all(size % group == 0 for size in sizes)), None)


def _int8(config: dict[str, Any], *, per_row: bool = False):
    from torchao.quantization import Int8WeightOnlyConfig
    from torchao.quantization.granularity import PerGroup, PerRow

    group = None if per_row else int8_group_size(config)
    return Int8WeightOnlyConfig(granularity=PerGroup(group) if group else PerRow())


def _int4(config: dict[str, Any]):
    from torchao.quantization import IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup

    return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32))


QUANTIZERS: Registry = Registry("quantization method")
QUANTIZERS.add("int8", _int8)
QUANTIZERS.add("int8_row", partial(_int8, per_row=True))
QUANTIZERS.add("int4", _int4)


def quantize_folder(source: Path, out: Path, method: str) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer, TorchAoConfig

    factory = QUANTIZERS.get(method)
    config = factory(json.loads((Path(source) / "config.json").read_text()))
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(source),
            dtype=torch.bfloat16,
            quantization_config=TorchAoConfig(quant_type=config, include_input_output_embeddings=True),
        )
    except (RuntimeError, NotImplementedError) as error:
        raise OpenRecipeError(f"torchao cannot quantize this model with {method} here: {error}") from None
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    with atomic_directory(out, overwrite=True) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        info = source / "openrecipe.json"
        if info.is_file():
            (tmp / "openrecipe.json").write_bytes(info.read_bytes())
    return out
