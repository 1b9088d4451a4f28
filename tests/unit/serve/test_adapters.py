"""Stacked LoRA adapters give each row of a mixed batch exactly what PEFT's mixed-adapter forward gives it."""

from __future__ import annotations

import pytest
import torch

from openrecipe.serve.engines import adapters as adapters_module
from openrecipe.serve.engines.adapters import AdapterSet
from openrecipe.serve.engines.base import GenerationRequest

ROWS = ["nova", "lumen", None, "lumen", "nova", None]


def _adapter(base_dir, out_dir, seed: int, **config):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    get_peft_model(model, LoraConfig(init_lora_weights=False, **config)).save_pretrained(str(out_dir))
    return str(out_dir)


def _adapter_set(tiny_model_dir, tmp_path, **lumen) -> AdapterSet:
    from transformers import AutoModelForCausalLM

    paths = {  # different ranks and different target layers: the stacks are uneven
        "nova": _adapter(tiny_model_dir, tmp_path / "nova", 0, r=8, lora_alpha=32, target_modules=["q_proj", "v_proj"]),
        "lumen": _adapter(
            tiny_model_dir, tmp_path / "lumen", 1, **{"r": 4, "target_modules": ["v_proj", "o_proj"]}, **lumen
        ),
    }
    return AdapterSet(AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval(), paths)


def _requests(names):
    return [GenerationRequest(prompt_ids=[1], max_tokens=1, emit=lambda event: None, adapter=n) for n in names]


@torch.inference_mode()
def _peft_logits(adapters: AdapterSet, ids: torch.Tensor, names) -> torch.Tensor:
    return adapters.model(input_ids=ids, adapter_names=[name or "__base__" for name in names]).logits


@torch.inference_mode()
def test_a_mixed_batch_matches_peft_row_by_row_and_base_rows_stay_base(tiny_model_dir, tmp_path):
    adapters = _adapter_set(tiny_model_dir, tmp_path)
    assert adapters._stacked  # plain LoRA is stacked
    ids = torch.randint(0, 200, (len(ROWS), 7))
    stacked = adapters.forward(_requests(ROWS), input_ids=ids).logits
    base_only = adapters.forward(_requests([None] * len(ROWS)), input_ids=ids).logits
    for module, layer in adapters._stacked.items():  # PEFT's own path as the reference
        layer.remove(module)
    reference = _peft_logits(adapters, ids, ROWS)
    torch.testing.assert_close(stacked, reference, rtol=1e-5, atol=1e-5)
    for row, name in enumerate(ROWS):
        changed = not torch.allclose(stacked[row], base_only[row], atol=1e-4)
        assert changed == (name is not None), (row, name)


@pytest.mark.parametrize("stacked", [True, False], ids=["stacked", "peft"])
@torch.inference_mode()
def test_unloading_the_first_adapter_keeps_a_retiring_one_answering_until_idle(
    tiny_model_dir, tmp_path, monkeypatch, stacked
):
    if not stacked:
        monkeypatch.setattr(adapters_module, "_stackable", lambda module: False)
    adapters = _adapter_set(tiny_model_dir, tmp_path)
    assert (adapters._stacked is not None) == stacked
    ids = torch.randint(0, 200, (len(ROWS), 5))
    before = adapters.forward(_requests(ROWS), input_ids=ids).logits
    adapters.unload("nova")
    adapters._users["nova"] = 1  # a request for it is still running: its weights stay
    adapters.apply_pending()
    torch.testing.assert_close(adapters.forward(_requests(ROWS), input_ids=ids).logits, before)
    adapters._users["nova"] = 0
    assert adapters.apply_pending()  # now deleted, and the stacks rebuilt without it
    assert adapters._stacked_names == (["lumen"] if stacked else [])
    only_lumen = ["lumen", None, "lumen"]
    torch.testing.assert_close(
        adapters.forward(_requests(only_lumen), input_ids=ids[[1, 2, 3]]).logits,
        before[[1, 2, 3]],
        rtol=1e-5,
        atol=1e-5,
    )


@torch.inference_mode()
def test_an_adapter_stacking_cannot_express_falls_back_to_peft(tiny_model_dir, tmp_path):
    pytest.importorskip("peft")
    adapters = _adapter_set(tiny_model_dir, tmp_path, use_dora=True)
    assert adapters._stacked is None
    ids = torch.randint(0, 200, (2, 5))
    names = ["nova", None]  # PEFT refuses DoRA in `adapter_names` batches: the rows it can serve still work
    assert adapters.forward_arguments(_requests(names)) == {"adapter_names": ["nova", "__base__"]}
    torch.testing.assert_close(
        adapters.forward(_requests(names), input_ids=ids).logits, _peft_logits(adapters, ids, names)
    )
