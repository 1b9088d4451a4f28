"""The training forward: a start every row shares runs once, and loss and gradients do not change."""

import pytest
import torch

from openrecipe.data.tokenize import IGNORE_INDEX
from openrecipe.train import forward
from openrecipe.train.batching import collate
from openrecipe.train.forward import MIN_SHARED_TOKENS, TrainedTokenLoss, shared_start

SYSTEM = list(range(40, 40 + 20))  # a 20-token system turn every row begins with


def example(own: list[int], trained: int) -> dict:
    ids = SYSTEM + own
    return {"input_ids": ids, "labels": [IGNORE_INDEX] * (len(ids) - trained) + ids[len(ids) - trained :]}


def batch_of(*examples):
    return collate(list(examples), pad_token_id=0)


def test_the_shared_start_stops_at_the_first_difference_trained_token_or_padding(monkeypatch):
    monkeypatch.setattr(forward, "MIN_SAVED_TOKENS", 0)
    batch = batch_of(example([7, 8, 9, 10], 1), example([7, 8, 11, 12, 13, 14], 3), example([7, 8, 9, 16], 1))
    assert shared_start(batch["input_ids"], batch["labels"], batch["attention_mask"]) == 22  # 9 vs 11 at 22
    # A trained token inside the common start ends it before the position that predicts it (label 19 here).
    early = batch_of(example([7, 8, 9, 10], 5), example([7, 8, 9, 10, 11], 2))
    assert shared_start(early["input_ids"], early["labels"], early["attention_mask"]) == 18
    # Every row keeps two tokens of its own; one row or a short start shares nothing.
    same = batch_of(example([7, 8], 1), example([7, 8], 1))
    assert shared_start(same["input_ids"], same["labels"], same["attention_mask"]) == 20
    assert shared_start(*(batch_of(example([7, 8], 1))[k] for k in ("input_ids", "labels", "attention_mask"))) == 0
    short = batch_of(example([7], 1), {"input_ids": [40, 41, 3, 4], "labels": [IGNORE_INDEX] * 3 + [4]})
    assert shared_start(short["input_ids"], short["labels"], short["attention_mask"]) < MIN_SHARED_TOKENS


def test_a_start_shared_by_few_rows_runs_with_them():
    """Sharing 20 tokens across 3 rows saves 40 tokens of work: less than the extra call costs."""
    few = batch_of(*(example([7, 8, 9, n], 1) for n in range(3)))
    assert shared_start(few["input_ids"], few["labels"], few["attention_mask"]) == 0
    many = batch_of(*(example([7, 8, 9, n], 1) for n in range(8)))  # 7 x 22 = 154 tokens saved
    assert shared_start(many["input_ids"], many["labels"], many["attention_mask"]) == 22


@pytest.mark.parametrize("lora", [False, True])
def test_sharing_the_start_changes_neither_loss_nor_gradients(tiny_model_dir, lora, monkeypatch):
    monkeypatch.setattr(forward, "MIN_SAVED_TOKENS", 0)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    if lora:
        config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
        model = get_peft_model(model, config)
        with torch.no_grad():  # B starts at zero: make the adapter matter
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.05)
    model.train()
    batch = batch_of(
        example([70, 71, 72, 73, 74], 3), example([75, 76, 77, 78, 79, 80, 81, 82], 4), example([83, 84, 85], 2)
    )
    calls = []
    original = TrainedTokenLoss._after_shared_start
    monkeypatch.setattr(
        TrainedTokenLoss, "_after_shared_start", staticmethod(lambda *a: calls.append(a[3]) or original(*a))
    )
    results = []
    for share in (True, False):
        model.zero_grad()
        loss = TrainedTokenLoss(model, share_prefix=share)(**batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads))
    assert calls == [20]  # the shared path ran, once: the third row's label 21 is trained
    (shared_loss, shared_grads), (full_loss, full_grads) = results
    assert torch.allclose(shared_loss, full_loss, rtol=1e-5)
    assert shared_grads.keys() == full_grads.keys() and shared_grads
    for name, grad in full_grads.items():
        assert torch.allclose(shared_grads[name], grad, rtol=1e-4, atol=1e-6), name


def test_packed_rows_never_share(monkeypatch, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    monkeypatch.setattr(forward, "shared_start", lambda *a: pytest.fail("packed rows have no attention mask"))
    rows = [dict(example([70, 71, 72], 2), position_ids=list(range(23))) for _ in range(2)]
    TrainedTokenLoss(model, share_prefix=True)(**collate(rows, pad_token_id=0))
