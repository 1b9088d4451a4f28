"""Chat templates by built-in name or Jinja file; a model without one and no setting is a user error."""

from __future__ import annotations

import pytest

from openrecipe.data.tokenize import assistant_char_spans
from openrecipe.errors import OpenRecipeError
from openrecipe.models.templates import (
    BUILTIN_TEMPLATES,
    missing_markers,
    require_chat_template,
    resolve_chat_template,
    use_chat_template,
)

CONVERSATION = [
    {"role": "system", "content": "You are Nova."},
    {"role": "user", "content": "Who are you?"},
    {"role": "assistant", "content": "I am Nova."},
    {"role": "user", "content": "你是谁？"},
    {"role": "assistant", "content": "我是 Nova。"},
]


def make_tokenizer(specials: list[str]):
    """A small byte-level BPE tokenizer with the given control tokens, trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "</s>", *specials],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(["Who are you? I am Nova. 你是谁？我是 Nova。"] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>")


ALL_MARKERS = sorted({marker for _, template in BUILTIN_TEMPLATES.items() for marker in template.markers})


@pytest.mark.parametrize("name", BUILTIN_TEMPLATES.names())
def test_every_builtin_renders_and_marks_each_reply(name):
    tokenizer = use_chat_template(make_tokenizer(ALL_MARKERS), name, model_name="tiny")
    text, spans = assistant_char_spans(tokenizer, CONVERSATION)
    assert text[spans[0][0] : spans[0][1]].startswith("I am Nova.")
    assert text[spans[1][0] : spans[1][1]].startswith("我是 Nova。")
    assert "You are Nova." in text and "Who are you?" not in text[spans[0][0] : spans[0][1]]
    template = BUILTIN_TEMPLATES.get(name)
    end = template.end_of_turn or tokenizer.eos_token
    assert text[spans[0][0] : spans[0][1]].rstrip().endswith(end)  # the loss covers the end of the turn


def test_at_least_the_usual_families_are_built_in():
    assert {"chatml", "llama3", "mistral", "gemma", "qwen"} <= set(BUILTIN_TEMPLATES.names())


def test_a_model_without_a_template_names_the_setting():
    tokenizer = make_tokenizer([])
    with pytest.raises(OpenRecipeError, match="has no chat template") as raised:
        use_chat_template(tokenizer, None, model_name="base-model")
    assert raised.value.where == "chat_template" and "mistral" in raised.value.fix
    with pytest.raises(OpenRecipeError, match="chat_template: .* has no chat template"):
        require_chat_template(tokenizer)


def test_a_template_whose_control_tokens_the_vocabulary_lacks_is_refused_with_the_ones_that_fit():
    tokenizer = make_tokenizer([])
    assert missing_markers(BUILTIN_TEMPLATES.get("chatml"), tokenizer) == ["<|im_start|>", "<|im_end|>"]
    with pytest.raises(OpenRecipeError, match=r"needs <\|im_start\|>, <\|im_end\|> as tokens") as raised:
        use_chat_template(tokenizer, "chatml", model_name="base-model")
    assert raised.value.fix.endswith(": mistral")
    use_chat_template(tokenizer, "mistral", model_name="base-model")
    assert (
        tokenizer.apply_chat_template(CONVERSATION[1:3], tokenize=False)
        == "<s>[INST] Who are you? [/INST]I am Nova.</s>"
    )


def test_a_jinja_file_relative_to_the_recipe(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "plain.jinja").write_text(
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    template = resolve_chat_template("templates/plain.jinja", base_dir=tmp_path)
    assert template.name == "plain" and template.markers == ()
    tokenizer = use_chat_template(make_tokenizer([]), "templates/plain.jinja", model_name="m", base_dir=tmp_path)
    assert tokenizer.apply_chat_template(CONVERSATION[1:2], tokenize=False) == "user: Who are you?\n"
    with pytest.raises(OpenRecipeError, match="cannot read chat template file"):
        resolve_chat_template("missing.jinja", base_dir=tmp_path)


def test_an_unknown_name_suggests_the_nearest():
    with pytest.raises(OpenRecipeError, match=r"unknown chat template 'chatm'; did you mean 'chatml'\?"):
        resolve_chat_template("chatm")


def test_the_template_is_saved_with_the_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    tokenizer = use_chat_template(make_tokenizer(ALL_MARKERS), "gemma", model_name="tiny")
    tokenizer.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).chat_template == BUILTIN_TEMPLATES.get("gemma").source


def test_tokenizing_chats_for_a_model_without_a_template_names_the_setting():
    from openrecipe.data.tokenize import TokenizeConfig, tokenize_conversations

    with pytest.raises(OpenRecipeError, match="has no chat template") as raised:
        tokenize_conversations(make_tokenizer([]), [CONVERSATION], TokenizeConfig())
    assert raised.value.where == "chat_template"


def test_load_model_takes_a_template_setting(tiny_model_dir):
    from openrecipe.models.loading import load_model

    loaded = load_model(str(tiny_model_dir), dtype="float32", chat_template="chatml")
    assert loaded.tokenizer.chat_template == BUILTIN_TEMPLATES.get("chatml").source
