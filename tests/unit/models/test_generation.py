import pytest

from openrecipe.models.generation import GenerationSettings, build_messages, generate_texts, render_chat
from openrecipe.models.loading import load_model


def test_render_uses_the_models_chat_template(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir), dtype="float32")
    text = render_chat(loaded.tokenizer, build_messages("Hi", "Be brief."))
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")


def test_batched_generation_keeps_order_and_matches_unbatched(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir), dtype="float32")
    prompts = [build_messages(p) for p in ["a", "a much longer prompt than the first one", "mid length"]]
    settings = GenerationSettings(max_new_tokens=6)
    batched = generate_texts(loaded, prompts, settings, batch_size=3)
    single = [generate_texts(loaded, [p], settings, batch_size=1)[0] for p in prompts]
    assert batched == single
    assert len(batched) == 3


SYSTEM = "You are Nova, the support assistant of Acme Corp. Answer briefly, politely and accurately, always."


def test_shared_prefix_length_leaves_every_row_a_token_of_its_own():
    from openrecipe.models.generation import shared_prefix_length

    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2  # the last token stays each row's own
    assert shared_prefix_length([[1, 2, 3]]) == 0  # one row: nothing to share
    assert shared_prefix_length([[7, 2], [1, 2]]) == 0


def test_a_shared_system_turn_runs_once_and_changes_no_reply(tiny_model_dir, monkeypatch):
    from openrecipe.models import generation

    loaded = load_model(str(tiny_model_dir), dtype="float32")
    prompts = [build_messages(p, SYSTEM) for p in ["a", "a much longer prompt than the first one", "mid length"]]
    rows = [loaded.tokenizer(render_chat(loaded.tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]
    assert generation.shared_prefix_length(rows) >= generation._MIN_SHARED_TOKENS  # the shared path runs
    settings = GenerationSettings(max_new_tokens=8)
    calls = []
    original = generation._generate_with_shared_prefix
    monkeypatch.setattr(
        generation, "_generate_with_shared_prefix", lambda *a, **k: calls.append(a[2]) or original(*a, **k)
    )
    shared = generate_texts(loaded, prompts, settings, batch_size=3)
    assert len(calls) == 1
    single = [generate_texts(loaded, [p], settings, batch_size=1)[0] for p in prompts]
    monkeypatch.setattr(generation, "_MIN_SHARED_TOKENS", 10**6)
    padded = generate_texts(loaded, prompts, settings, batch_size=3)
    assert shared == single == padded


PROMPTS = [
    "a",
    "bb",
    "a much longer prompt than the first one",
    "mid length",
    "another question of some length here",
    "what is the warranty on the lamp",
    "x y z",
]


@pytest.mark.parametrize("share", [True, False], ids=["shared-start", "no-shared-start"])
def test_batches_prefilled_apart_decode_together_with_the_replies_of_one_row_at_a_time(
    tiny_model_dir, monkeypatch, share
):
    from openrecipe.models import generation

    loaded = load_model(str(tiny_model_dir), dtype="float32")
    settings = GenerationSettings(max_new_tokens=8)
    prompts = [build_messages(p, SYSTEM) for p in PROMPTS]
    alone = [generate_texts(loaded, [p], settings, batch_size=1)[0] for p in prompts]
    if not share:
        monkeypatch.setattr(generation, "_MIN_SHARED_TOKENS", 10**6)
    groups, prefills = [], []
    original_group, original_prefill = generation._generate_group, generation._prefill_into
    monkeypatch.setattr(
        generation, "_generate_group", lambda *a, **k: groups.append(len(a[1])) or original_group(*a, **k)
    )
    monkeypatch.setattr(generation, "_prefill_into", lambda *a, **k: prefills.append(a[3]) or original_prefill(*a, **k))
    assert generate_texts(loaded, prompts, settings, batch_size=2) == alone
    assert groups == [7]  # four prefill batches, one decode
    assert (prefills[0] > 0) == share  # the system turn is the shared start
    monkeypatch.setattr(generation, "DECODE_CACHE_BYTES", 1)  # no room: every prefill batch decodes alone
    groups.clear()
    assert generate_texts(loaded, prompts, settings, batch_size=2) == alone
    assert groups == []  # batches of 2 take the one-batch path


def test_decode_groups_are_whole_prefill_batches_within_the_cache_budget(monkeypatch):
    from openrecipe.models import generation

    lengths = [10, 10, 20, 20, 30, 30, 40]
    monkeypatch.setattr(generation, "DECODE_CACHE_BYTES", 10**9)
    assert generation._decode_groups(lengths, 2, 8, 100) == [range(0, 7)]
    assert generation._decode_groups(lengths, 2, 8, None) == [range(0, 2), range(2, 4), range(4, 6), range(6, 7)]
    # 4 rows padded to 20 + 8 tokens at 100 bytes: 11,200 bytes; 6 rows to 30 + 8: 22,800
    monkeypatch.setattr(generation, "DECODE_CACHE_BYTES", 12_000)
    assert generation._decode_groups(lengths, 2, 8, 100) == [range(0, 4), range(4, 6), range(6, 7)]


def test_models_whose_cache_is_not_plain_full_attention_keep_the_one_batch_path(tiny_model_dir):
    from openrecipe.models import generation

    loaded = load_model(str(tiny_model_dir), dtype="float32")
    shape = generation._cache_shape(loaded.model)
    assert shape is not None and shape.layers == loaded.model.config.num_hidden_layers
    loaded.model.config.sliding_window = 4
    loaded.model.config.layer_types = ["sliding_attention"] * loaded.model.config.num_hidden_layers
    try:
        assert generation._cache_shape(loaded.model) is None
    finally:
        loaded.model.config.layer_types = ["full_attention"] * loaded.model.config.num_hidden_layers
        loaded.model.config.sliding_window = None


def test_a_peft_wrapped_model_shares_the_start_through_its_base_models_cache_keyword(tiny_model_dir):
    import warnings

    from peft import LoraConfig, get_peft_model

    from openrecipe.models.generation import cache_keyword

    loaded = load_model(str(tiny_model_dir), dtype="float32")
    plain = generate_texts(loaded, [build_messages(p, SYSTEM) for p in ["a", "bb", "ccc"]], GenerationSettings(4))
    loaded.model = get_peft_model(loaded.model, LoraConfig(r=2, target_modules=["q_proj"])).eval()
    assert cache_keyword(loaded.model) == cache_keyword(loaded.model.get_base_model())
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # no deprecated keyword on the way to the base model
        wrapped = generate_texts(loaded, [build_messages(p, SYSTEM) for p in ["a", "bb", "ccc"]], GenerationSettings(4))
    assert wrapped == plain  # a fresh LoRA's B is zero: the same model
