"""INT8 and INT4 weight-only quantization with torchao, chosen from measurements on CPU:

- int8: `Int8WeightOnlyConfig` — runs on CPU, saves to safetensors and reloads; perplexity +0.5% vs BF16 on
  the default model at 0.63x its size (embeddings included).
- int4: `IntxWeightOnlyConfig(int4, group 32)` — the only torchao INT4 that runs on CPU
  (`Int4WeightOnlyConfig` needs CUDA); it costs ~+38% perplexity on a 135M model. For 4-bit deployment on
  CPU the GGUF q4_k_m export (llama.cpp kernels, ~+6%) is the better path; this one exists for GPUs-less
  transformers serving and is measured in the parity table like every other artifact.
- Not used: bitsandbytes 4-bit on CPU writes a corrupt checkpoint once a forward pass has run; quanto
  qint4 runs only under no_grad and costs +51%.
- `untie_embedding_weights` is never set: with it, the saved checkpoint lost `lm_head` on reload.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from openrecipe.errors import OpenRecipeError
from openrecipe.registry import Registry
from openrecipe.utils.fs import atomic_directory

QuantMethod = Literal["int8", "int4"]


def _int8():
    from torchao.quantization import Int8WeightOnlyConfig

    return Int8WeightOnlyConfig()


def _int4():
    from torchao.quantization import IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup

    return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32))


QUANTIZERS: Registry = Registry("quantization method")
QUANTIZERS.add("int8", _int8)
QUANTIZERS.add("int4", _int4)


def quantize_folder(source: Path, out: Path, method: str) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer, TorchAoConfig

    config = QUANTIZERS.get(method)()
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
