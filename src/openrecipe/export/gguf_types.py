"""GGUF file types: which tool writes each one, as registry entries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from openrecipe.registry import Registry

# Calibration tokens for llama.cpp's importance matrix. On the demo's fine-tune, q4_k_m's held-out perplexity
# was 37.61 with all 15,831 tokens and 37.58 with 3,969 taken evenly (bench numbers in the README).
DEFAULT_CALIBRATION_TOKENS = 32768


@dataclass(frozen=True)
class GGUFType:
    """`convert`: written by llama.cpp's converter from the HF weights (its --outtype);
    `quantize`: llama.cpp's quantizer (`llama_ftype` name) applied to an F16 file."""

    name: str
    producer: Literal["convert", "quantize"]
    llama_ftype: str
    description: str


GGUF_TYPES: Registry[GGUFType] = Registry("GGUF type")

for _name, _producer, _ftype, _description in (
    ("f32", "convert", "LLAMA_FTYPE_ALL_F32", "32-bit floats, lossless, largest"),
    ("f16", "convert", "LLAMA_FTYPE_MOSTLY_F16", "16-bit floats, the reference for every other type"),
    ("bf16", "convert", "LLAMA_FTYPE_MOSTLY_BF16", "bfloat16, the training dtype of most models"),
    ("q8_0", "convert", "LLAMA_FTYPE_MOSTLY_Q8_0", "8-bit blocks of 32, close to f16 at half the size"),
    ("q4_0", "quantize", "LLAMA_FTYPE_MOSTLY_Q4_0", "4-bit blocks of 32"),
    ("q4_1", "quantize", "LLAMA_FTYPE_MOSTLY_Q4_1", "4-bit blocks of 32 with an offset"),
    ("q5_0", "quantize", "LLAMA_FTYPE_MOSTLY_Q5_0", "5-bit blocks of 32"),
    ("q5_1", "quantize", "LLAMA_FTYPE_MOSTLY_Q5_1", "5-bit blocks of 32 with an offset"),
    ("q3_k_m", "quantize", "LLAMA_FTYPE_MOSTLY_Q3_K_M", "3-bit K-quant, medium"),
    ("q4_k_s", "quantize", "LLAMA_FTYPE_MOSTLY_Q4_K_S", "4-bit K-quant, small"),
    ("q4_k_m", "quantize", "LLAMA_FTYPE_MOSTLY_Q4_K_M", "4-bit K-quant, medium: the usual 4-bit choice"),
    ("q5_k_m", "quantize", "LLAMA_FTYPE_MOSTLY_Q5_K_M", "5-bit K-quant, medium"),
    ("q6_k", "quantize", "LLAMA_FTYPE_MOSTLY_Q6_K", "6-bit K-quant"),
):
    GGUF_TYPES.add(_name, GGUFType(_name, _producer, _ftype, _description))


def gguf_type(name: str) -> GGUFType:
    """The registered type, or a user error listing the valid names and the nearest one."""
    return GGUF_TYPES.get(name)


def quantizer_types() -> list[str]:
    return [name for name, entry in GGUF_TYPES.items() if entry.producer == "quantize"]
