"""Load (model, tokenizer) for any model reference, on the right device and dtype."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from openrecipe.errors import OpenRecipeError
from openrecipe.models.device import pick_device, pick_dtype
from openrecipe.models.refs import ModelRef, ensure_hub_available, resolve_model_ref
from openrecipe.models.templates import ChatTemplate


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    ref: ModelRef
    device: torch.device
    dtype: torch.dtype


def load_tokenizer(ref: ModelRef, *, trust_remote_code: bool = False):
    """The model's tokenizer, with the reference's chat template (if it names one) in place of its own."""
    tokenizer = _load_tokenizer(ref, trust_remote_code=trust_remote_code)
    if ref.template is not None:
        from openrecipe.models.templates import use_chat_template

        use_chat_template(tokenizer, ref.template, model_name=ref.name)
    return tokenizer


def _load_tokenizer(ref: ModelRef, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    if ref.kind == "adapter":
        adapter_dir = ref.path
        assert adapter_dir is not None
        if (adapter_dir / "tokenizer_config.json").is_file():
            return AutoTokenizer.from_pretrained(str(adapter_dir), trust_remote_code=trust_remote_code)
        assert ref.base is not None
        return _load_tokenizer(ref.base, trust_remote_code=trust_remote_code)
    if ref.kind == "gguf":
        from openrecipe.models.gguf_import import dequantized_folder

        assert ref.path is not None
        return AutoTokenizer.from_pretrained(str(dequantized_folder(ref.path)))
    return AutoTokenizer.from_pretrained(_source(ref), trust_remote_code=trust_remote_code)


def _source(ref: ModelRef) -> str:
    if ref.kind == "default":
        from openrecipe.models.default import ensure_default_model

        return str(ensure_default_model())
    if ref.kind == "hub":
        ensure_hub_available(ref.name)
        return ref.name
    assert ref.path is not None
    return str(ref.path)


def _load_weights(ref: ModelRef, dtype: torch.dtype, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM

    if ref.kind == "gguf":
        from openrecipe.models.gguf_import import dequantized_folder

        assert ref.path is not None
        return AutoModelForCausalLM.from_pretrained(str(dequantized_folder(ref.path)), dtype=dtype)
    if ref.kind == "adapter":
        from peft import PeftModel

        assert ref.base is not None and ref.path is not None
        base = _load_weights(ref.base, dtype, trust_remote_code)
        return PeftModel.from_pretrained(base, str(ref.path))
    source = _source(ref)
    if _is_prequantized(Path(source)):
        dtype = "auto"  # quantized weights carry their own compute dtype (torchao: bf16)
    try:
        return AutoModelForCausalLM.from_pretrained(source, dtype=dtype, trust_remote_code=trust_remote_code)
    except ValueError as error:
        if "trust_remote_code" in str(error):
            raise OpenRecipeError(
                f"{ref.name} needs custom code from its repository to load",
                fix="re-run with --trust-remote-code if you trust its authors",
            ) from None
        raise OpenRecipeError(f"cannot load model {ref.name}: {error}") from None


def check_full_weights(folder: Path, action: str) -> None:
    """Refuse a quantized folder where full weights are needed (quantizing again, GGUF export)."""
    if _is_prequantized(folder):
        raise OpenRecipeError(
            f"{folder} holds quantized weights; it cannot be {action}",
            fix="point at the full-precision model it was quantized from (e.g. stage:sft, not stage:quantize/int8)",
        )


def _is_prequantized(folder: Path) -> bool:
    import json

    config = folder / "config.json"
    try:
        return folder.is_dir() and "quantization_config" in json.loads(config.read_text())
    except (OSError, ValueError):
        return False


def load_model(
    name: str | ModelRef,
    *,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    merge_adapter: bool = False,
    chat_template: ChatTemplate | str | Path | None = None,
) -> LoadedModel:
    """Load any model reference for inference (eval mode); `chat_template` (a built-in name or a Jinja
    file) replaces the model's own template."""
    ref = name if isinstance(name, ModelRef) else resolve_model_ref(name)
    if chat_template is not None:
        from openrecipe.models.templates import resolve_chat_template

        template = chat_template if isinstance(chat_template, ChatTemplate) else resolve_chat_template(chat_template)
        ref = ref.with_template(template)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    tokenizer = load_tokenizer(ref, trust_remote_code=trust_remote_code)
    model = _load_weights(ref, torch_dtype, trust_remote_code)
    if merge_adapter and ref.kind == "adapter":
        model = model.merge_and_unload()
    model.to(torch_device)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, ref, torch_device, torch_dtype)


def model_source_path(ref: ModelRef) -> Path | None:
    """Local folder holding the weights, materializing the default model if needed."""
    if ref.kind in ("default", "hf_folder"):
        return Path(_source(ref))
    return ref.path
