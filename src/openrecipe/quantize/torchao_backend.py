"""INT8 weight-only quantization with torchao, for transformers on any device.

- int8: `Int8WeightOnlyConfig` with per-group scales (group 128, 64 or 32: the largest that divides every
  linear layer's input size; per-row when none does). torchao has no fused CPU kernel for grouped int8, so it
  decodes slower than int8_row on CPU.
- int8_row: one scale per output row — torch's fused int8 CPU kernel, a little less accurate.
- int4 is not offered here: torchao's only 4-bit that runs on CPU keeps int8 storage (no smaller than int8)
  and loses far more quality than llama.cpp's K-quants; `int4` is answered with a pointer to GGUF q4_k_m
  (bench/quantize.py measures both).
- Tied input/output embeddings stay in the model's dtype: `untie_embedding_weights` would quantize them,
  but the saved checkpoint then lost `lm_head` on reload.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import BeforeValidator

from openrecipe.errors import OpenRecipeError
from openrecipe.registry import Registry
from openrecipe.utils.fs import atomic_directory

INT8_GROUP_SIZES = (128, 64, 32)
INT4_ADVICE = (
    "int4 through torchao on CPU is not 4-bit on disk (0.64x of BF16, the same as int8) and costs about +35% "
    "perplexity on the default model; for 4-bit use GGUF q4_k_m, decoded by llama.cpp: 0.39x of BF16 and about "
    "+4% perplexity with calibration data (python bench/quantize.py measures both on this machine)"
)
INT4_FIX = "openrecipe export MODEL --gguf q4_k_m --out gguf/ (in a recipe: an export stage with gguf: [q4_k_m])"


def _refuse_int4(value: Any) -> Any:
    if isinstance(value, str) and value.lower().startswith("int4"):
        raise ValueError(f"{INT4_ADVICE}. Instead: {INT4_FIX}")
    return value


QuantMethod = Annotated[Literal["int8", "int8_row"], BeforeValidator(_refuse_int4)]


def linear_input_sizes(config: dict[str, Any]) -> set[int]:
    """Input sizes of a decoder's linear layers, read from its config.json (attention, MLP); GPT-2-style
    configs name them `n_embd`, `n_head`, `n_inner`."""
    hidden = config.get("hidden_size") or config.get("n_embd") or config["d_model"]
    heads = config.get("num_attention_heads") or config.get("n_head") or 1
    head_dim = config.get("head_dim") or hidden // heads
    intermediate = config.get("intermediate_size") or config.get("n_inner") or hidden
    return {hidden, heads * head_dim, intermediate}


def check_linear_layers(source: Path) -> None:
    """torchao quantizes `nn.Linear`; a model whose projections are GPT-2's `Conv1D` would come out mostly
    unquantized under an int8 name, so it is refused with the path that does quantize it."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    try:
        config = AutoConfig.from_pretrained(str(source))
        with init_empty_weights():
            model = AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError, OSError):
        return  # an architecture transformers cannot build here: the quantizer's own load reports it
    conv = sum(isinstance(module, Conv1D) for module in model.modules())
    if conv:
        raise OpenRecipeError(
            f"{type(model).__name__} keeps {conv} of its weight matrices in Conv1D layers, which torchao's int8 "
            "does not quantize",
            fix="export GGUF q8_0 instead (llama.cpp quantizes them), or quantize a model built from Linear layers",
        )


def int8_group_size(config: dict[str, Any]) -> int | None:
    sizes = linear_input_sizes(config)
    return next((group for group in INT8_GROUP_SIZES if all(size % group == 0 for size in sizes)), None)


def _int8(config: dict[str, Any], *, per_row: bool = False):
    from torchao.quantization import Int8WeightOnlyConfig
    from torchao.quantization.granularity import PerGroup, PerRow

    group = None if per_row else int8_group_size(config)
    return Int8WeightOnlyConfig(granularity=PerGroup(group) if group else PerRow())


QUANTIZERS: Registry = Registry("quantization method")
QUANTIZERS.add("int8", _int8)
QUANTIZERS.add("int8_row", partial(_int8, per_row=True))


def check_method(method: str) -> None:
    """Refuse int4 with the 4-bit path that works, and unknown names with the valid ones, before any work."""
    if method.lower().startswith("int4"):
        raise OpenRecipeError(INT4_ADVICE, fix=INT4_FIX)
    QUANTIZERS.get(method)


def quantize_folder(source: Path, out: Path, method: str) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer, TorchAoConfig

    from openrecipe.models.loading import check_full_weights

    check_method(method)
    check_full_weights(Path(source), "quantized again")
    check_linear_layers(Path(source))
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
