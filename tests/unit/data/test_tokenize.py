import pytest
import torch

from openrecipe.data.tokenize import (
    IGNORE_INDEX,
    TokenizeConfig,
    pack_examples,
    pack_texts,
    tokenize_chat,
    tokenize_conversations,
)

CONVERSATION = [
    {"role": "system", "content": "S."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello there"},
    {"role": "user", "content": "Bye"},
    {"role": "assistant", "content": "Goodbye"},
]


def test_only_assistant_tokens_and_end_of_turn_carry_loss(tokenizer):
    ids, labels = tokenize_chat(tokenizer, CONVERSATION)
    trained = [tokenizer.decode([i]) for i, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert "".join(trained) == "Hello there<|im_end|>Goodbye<|im_end|>"
    # Exact positions: each reply is followed by its <|im_end|>, and nothing else is trained.
    trained_positions = [p for p, label in enumerate(labels) if label != IGNORE_INDEX]
    for position in trained_positions:
        assert labels[position] == ids[position]
    assert sum(1 for p in trained_positions if ids[p] == im_end) == 2
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(CONVERSATION, tokenize=False)


def test_train_on_all(tokenizer):
    ids, labels = tokenize_chat(tokenizer, CONVERSATION, train_on="all")
    assert labels == ids


def test_system_prompt_added_and_overlength_policies(tokenizer):
    short = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    long = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "word " * 200}]
    examples, stats = tokenize_conversations(
        tokenizer, [short, long], TokenizeConfig(max_length=64), system_prompt="You are Nova."
    )
    assert "You are Nova." in tokenizer.decode(examples[0]["input_ids"])
    assert stats.truncated == 1 and len(examples[1]["input_ids"]) == 64
    _, stats = tokenize_conversations(tokenizer, [short, long], TokenizeConfig(max_length=64, overlength="drop"))
    assert stats.dropped == {"overlength": 1}
    from openrecipe.errors import OpenRecipeError

    with pytest.raises(OpenRecipeError, match="more than max_length=64"):
        tokenize_conversations(tokenizer, [long], TokenizeConfig(max_length=64, overlength="error"))


def test_examples_without_trainable_tokens_are_counted_and_dropped(tokenizer):
    # A long system prompt truncated away the whole reply.
    conversation = [
        {"role": "system", "content": "rule " * 100},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
    ]
    examples, stats = tokenize_conversations(tokenizer, [conversation], TokenizeConfig(max_length=32))
    assert examples == [] and stats.dropped == {"no_trainable_tokens": 1}


def test_packing_position_ids_restart():
    blocks = pack_examples(
        [
            {"input_ids": [1, 2, 3], "labels": [1, 2, 3]},
            {"input_ids": [4, 5], "labels": [4, 5]},
            {"input_ids": [6, 7, 8], "labels": [6, 7, 8]},
        ],
        block_size=5,
    )
    assert blocks[0] == {
        "input_ids": [1, 2, 3, 4, 5],
        "labels": [1, 2, 3, 4, 5],
        "position_ids": [0, 1, 2, 0, 1],
    }
    assert blocks[1]["position_ids"] == [0, 1, 2]


def test_pack_texts_blocks_and_positions(tokenizer):
    blocks, stats = pack_texts(tokenizer, ["alpha beta gamma " * 10, "delta epsilon " * 10], block_size=16)
    assert all(len(b["input_ids"]) == 16 for b in blocks)
    assert all(b["position_ids"][0] == 0 for b in blocks)
    assert stats.examples_in == 2 and stats.tokens == 16 * len(blocks)


def test_packed_documents_do_not_attend_to_each_other(tiny_model_dir, tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), attn_implementation="sdpa").eval()
    first = tokenizer("The first document.", add_special_tokens=False)["input_ids"]
    second = tokenizer("A second, unrelated one.", add_special_tokens=False)["input_ids"]
    packed = pack_examples([{"input_ids": first, "labels": first}, {"input_ids": second, "labels": second}], 64)[0]
    with torch.no_grad():
        together = model(
            input_ids=torch.tensor([packed["input_ids"]]),
            position_ids=torch.tensor([packed["position_ids"]]),
            use_cache=False,
        ).logits[0, len(first) :]
        alone = model(input_ids=torch.tensor([second])).logits[0]
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-4)
