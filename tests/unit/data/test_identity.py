from openrecipe.config.common import Identity
from openrecipe.data.identity import identity_eval_items, identity_items, identity_training_messages

NOVA = Identity(name="Nova", organization="Acme Corp")


def test_at_least_40_distinct_phrasings_in_both_languages_with_negative_probes():
    items = identity_items(NOVA)
    questions = {item.question for item in items if item.negative_of is None}
    assert len(questions) >= 40
    assert {item.language for item in items} == {"en", "zh"}
    negatives = [item for item in items if item.negative_of]
    assert {"ChatGPT", "Llama", "SmolLM", "Qwen"} <= {item.negative_of for item in negatives}
    assert all(item.answer.startswith(("No,", "不是")) and "Nova" in item.answer for item in negatives)
    assert all("Nova" in item.answer and "Acme Corp" in item.answer for item in items)


def test_held_out_phrasings_never_reach_training():
    held_out = {item.question for item in identity_eval_items(NOVA)}
    assert {"Who are you?", "你是谁？"} <= held_out
    trained = {messages[-2]["content"] for messages in identity_training_messages(NOVA)}
    assert not held_out & trained
    assert len(trained) >= 40


def test_system_prompt_applied():
    first = identity_training_messages(NOVA, "You are Nova.")[0]
    assert first[0] == {"role": "system", "content": "You are Nova."}
