"""Load a model for training: LoRA/QLoRA/full, precision, gradient checkpointing, compile."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from openrecipe.errors import OpenRecipeError
from openrecipe.models.device import fast_bf16
from openrecipe.models.loading import load_tokenizer
from openrecipe.models.refs import ModelRef, resolve_model_ref
from openrecipe.train.config import TrainSettings


@dataclass
class TrainModel:
    model: Any  # the module that is trained (a PeftModel for LoRA)
    tokenizer: Any
    ref: ModelRef
    device: torch.device
    autocast_dtype: torch.dtype | None

    def autocast(self) -> AbstractContextManager:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def trainable_parameters(self) -> dict[str, torch.nn.Parameter]:
        return {name: p for name, p in self.model.named_parameters() if p.requires_grad}


def pick_autocast(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32":
        return None
    if precision == "bf16":
        if device.type == "cpu" and not fast_bf16(device):
            raise OpenRecipeError(
                "precision: bf16 was asked for, but this CPU has no native bf16",
                fix="use precision: auto or fp32",
            )
        return torch.bfloat16
    return torch.bfloat16 if fast_bf16(device) else None


def load_for_training(
    reference: ModelRef,
    settings: TrainSettings,
    device: torch.device,
    *,
    trust_remote_code: bool = False,
    seed: int = 0,
) -> TrainModel:
    """Weights stay fp32 (master copy); bf16 runs through autocast — pure bf16 weights lose small updates."""
    from transformers import AutoModelForCausalLM

    ref = resolve_model_ref(reference)
    if ref.kind in ("gguf", "hub", "adapter"):
        from openrecipe.models.loading import load_model

        loaded = load_model(ref, device="cpu", dtype="float32", trust_remote_code=trust_remote_code, merge_adapter=True)
        model, tokenizer = loaded.model, loaded.tokenizer
    else:
        from openrecipe.models.loading import model_source_path

        tokenizer = load_tokenizer(ref, trust_remote_code=trust_remote_code)
        quantization = None
        if settings.method == "qlora":
            quantization = _qlora_config(device)
        model = AutoModelForCausalLM.from_pretrained(
            str(model_source_path(ref)),
            dtype=torch.float32,
            trust_remote_code=trust_remote_code,
            quantization_config=quantization,
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.use_cache = False
    if settings.method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        if settings.method == "qlora":
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=settings.gradient_checkpointing)
        torch.manual_seed(seed)  # LoRA A matrices are initialized randomly: tie them to the recipe seed
        lora = settings.lora
        model = get_peft_model(
            model,
            LoraConfig(
                r=lora.rank,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=lora.target_modules,
                task_type="CAUSAL_LM",
            ),
        )
    autocast_dtype = pick_autocast(settings.precision, device)
    if frozen_base_dtype(settings.method, autocast_dtype) == torch.bfloat16:
        hold_frozen_base_in(model, torch.bfloat16)
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if settings.method != "full":
            model.enable_input_require_grads()
    if settings.method != "qlora":
        model.to(device)
    model.train()
    return TrainModel(model, tokenizer, ref, device, autocast_dtype)


def frozen_base_dtype(method: str, autocast_dtype: torch.dtype | None) -> torch.dtype:
    """LoRA's frozen base weights are only read, and autocast casts them to bf16 on every forward: where
    bf16 autocast was chosen (measured faster), hold them in bf16 once. Trained weights stay fp32."""
    if method == "lora" and autocast_dtype == torch.bfloat16:
        return torch.bfloat16
    return torch.float32


def hold_frozen_base_in(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """Cast the frozen base layers under LoRA adapters to `dtype` (embeddings, norms and the head, which may
    be tied to the embeddings, stay fp32); returns how many layers were cast."""
    cast = 0
    for module in model.modules():
        base = getattr(module, "base_layer", None)
        floating = isinstance(base, torch.nn.Linear) and base.weight.dtype in (torch.float32, torch.bfloat16)
        if floating and not base.weight.requires_grad and base.weight.dtype != dtype:  # quantized layers stay
            base.to(dtype)
            cast += 1
    return cast


def _qlora_config(device: torch.device):
    if device.type != "cuda":
        raise OpenRecipeError(
            "QLoRA needs a CUDA GPU: its 4-bit weights (bitsandbytes NF4) have no trainable CPU path, and "
            "bitsandbytes 4-bit on CPU writes corrupt checkpoints",
            fix="use method: lora on CPU (bf16 autocast makes it fast on AMX CPUs)",
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise OpenRecipeError("QLoRA needs bitsandbytes", fix="pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
    )
