"""HF (Llama-family) folder → GGUF with the tokenizer and chat template embedded.

Why by hand: the PyPI `gguf` package has the writer and the numpy quantizers (F16, Q8_0, Q4_0) but no HF
converter, and llama.cpp's `convert_hf_to_gguf.py` only ships inside the llama-cpp-python sdist and only
works with its own bundled gguf-py. This module maps tensor names and metadata for the `llama`
architecture (Llama, SmolLM, Mistral without sliding window, ...); K-quants (q4_k_m) are then produced
from the F16 file by llama.cpp's own quantizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from openrecipe.errors import OpenRecipeError

SUPPORTED_ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama"}
NUMPY_TYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0", "q4_0": "Q4_0"}
FILE_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7, "bf16": 32}


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """HF stores rotary halves; llama.cpp expects interleaved pairs (what convert_hf_to_gguf.py does)."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def tensor_map(layers: int) -> dict[str, str]:
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    parts = {
        "input_layernorm": "attn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for layer in range(layers):
        for hf, gg in parts.items():
            names[f"model.layers.{layer}.{hf}.weight"] = f"blk.{layer}.{gg}.weight"
    return names


def _pre_tokenizer(name: str, tokens: list[str]) -> str:
    """llama.cpp's name for the pre-tokenizer (how text is split before BPE)."""
    lowered = name.lower()
    if "smollm" in lowered or (tokens[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] and len(tokens) == 49152):
        return "smollm"
    if "llama-3" in lowered or "llama3" in lowered:
        return "llama-bpe"
    return "gpt-2"


def _add_tokenizer(writer, folder: Path, tokenizer) -> None:
    import gguf

    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    model = data["model"]
    if model.get("type") != "BPE":
        raise OpenRecipeError(
            f"GGUF export supports BPE tokenizers; this one is {model.get('type')}",
            fix="export with llama.cpp's convert_hf_to_gguf.py for this model",
        )
    vocab_size = len(tokenizer)
    tokens = [""] * vocab_size
    for text, index in model["vocab"].items():
        if index < vocab_size:
            tokens[index] = text
    types = [gguf.TokenType.NORMAL] * vocab_size
    for added in data.get("added_tokens", []):
        if added["id"] < vocab_size:
            tokens[added["id"]] = added["content"]
            types[added["id"]] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    for index, token in enumerate(tokens):
        if not token:
            tokens[index] = f"[PAD{index}]"
            types[index] = gguf.TokenType.UNUSED
    merges = [" ".join(merge) if isinstance(merge, list) else merge for merge in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(f"{getattr(tokenizer, 'name_or_path', '')} {_model_name(folder)}", tokens))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for key, token in (
        ("bos", tokenizer.bos_token),
        ("eos", tokenizer.eos_token),
        ("unk", tokenizer.unk_token),
        ("pad", tokenizer.pad_token),
    ):
        if token is not None:
            index = tokenizer.convert_tokens_to_ids(token)
            {
                "bos": writer.add_bos_token_id,
                "eos": writer.add_eos_token_id,
                "unk": writer.add_unk_token_id,
                "pad": writer.add_pad_token_id,
            }[key](index)
    writer.add_add_bos_token(False)
    writer.add_add_space_prefix(False)
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)


def _model_name(folder: Path) -> str:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return ""
    return str(config.get("_model_name_or_path", "")) + " " + str(config.get("_name_or_path", ""))


def write_gguf(folder: Path, out: Path, qtype: str, *, name: str | None = None) -> Path:
    """Write `folder` (a complete HF model folder) as a GGUF of type f32/f16/bf16/q8_0/q4_0."""
    import gguf
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if qtype not in NUMPY_TYPES:
        raise OpenRecipeError(f"unknown GGUF type {qtype!r}", fix=f"use one of: {', '.join(NUMPY_TYPES)}")
    config = AutoConfig.from_pretrained(str(folder))
    architecture = (config.architectures or ["?"])[0]
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise OpenRecipeError(
            f"GGUF export supports {', '.join(SUPPORTED_ARCHITECTURES)}; this model is {architecture}",
            fix="use llama.cpp's convert_hf_to_gguf.py for other architectures",
        )
    if getattr(config, "sliding_window", None) and architecture == "MistralForCausalLM":
        raise OpenRecipeError("Mistral models with a sliding window are not supported by this exporter")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    rope = getattr(config, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    if rope.get("rope_type", "default") not in ("default", None):
        raise OpenRecipeError(f"rope scaling {rope.get('rope_type')!r} is not supported by this exporter")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name(name or folder.name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(theta))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(len(tokenizer))
    writer.add_file_type(FILE_TYPES[qtype])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(writer, folder, tokenizer)
    names = tensor_map(config.num_hidden_layers)
    state = model.state_dict()
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    target = getattr(gguf.GGMLQuantizationType, NUMPY_TYPES[qtype])
    for hf_name, tensor in state.items():
        if hf_name not in names:
            raise OpenRecipeError(f"no GGUF name for tensor {hf_name}", fix="this architecture variant is unsupported")
        data = tensor.detach().float().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = _permute(data, heads)
        elif hf_name.endswith("k_proj.weight"):
            data = _permute(data, kv_heads)
        # Norms stay F32 (as llama.cpp does); matrices get the requested type where their rows fit its blocks.
        kind = gguf.GGMLQuantizationType.F32 if data.ndim == 1 else target
        if kind not in (gguf.GGMLQuantizationType.F32,) and data.shape[-1] % gguf.GGML_QUANT_SIZES[kind][0]:
            kind = gguf.GGMLQuantizationType.F16
        if kind == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(names[hf_name], data.astype(np.float32))
        elif kind == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(names[hf_name], data.astype(np.float16))
        else:
            quantized = gguf.quants.quantize(data, kind)
            writer.add_tensor(names[hf_name], quantized, raw_shape=quantized.shape, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out)
    return out
