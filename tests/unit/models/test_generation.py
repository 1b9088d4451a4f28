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
