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
