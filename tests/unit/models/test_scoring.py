import torch

from openrecipe.models.loading import load_model
from openrecipe.models.scoring import token_log_probs
from openrecipe.stages.parity import heldout_rows


def test_batched_log_probs_equal_one_row_at_a_time_in_input_order(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir), dtype="float32")
    rows = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17]]  # lengths out of order: sorting must not leak
    batched = token_log_probs(loaded, rows, batch_size=8)
    with torch.inference_mode():
        single = [
            torch.log_softmax(loaded.model(input_ids=torch.tensor([row]), use_cache=False).logits[0, :-1].float(), -1)
            for row in rows
        ]
    assert [tuple(lp.shape) for lp in batched] == [(len(row) - 1, single[0].shape[-1]) for row in rows]
    for got, want in zip(batched, single, strict=True):
        assert torch.allclose(got, want, atol=1e-4)


def test_heldout_rows_stop_at_the_token_budget_paragraph_by_paragraph(tokenizer):
    text = "\n\n".join(f"Paragraph {n} talks about the weather in town number {n}." for n in range(40))
    rows = heldout_rows(tokenizer, text, budget=50)
    assert sum(len(row) for row in rows) == 50
    assert tokenizer.decode(rows[0]).startswith("Paragraph 0")
    assert all(len(row) > 1 for row in rows)
    everything = heldout_rows(tokenizer, text, budget=10**6)
    assert len(everything) == 40
