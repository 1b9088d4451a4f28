"""Which assistant turns carry loss (weights, last turn only) and tool conversations through the template."""

import copy

import pytest

from openrecipe.data.records import Record
from openrecipe.data.tokenize import IGNORE_INDEX, TokenizeConfig, tokenize_chat, tokenize_conversations
from openrecipe.errors import OpenRecipeError

# ChatML with tools, calls and results, in the shape of Qwen2.5's template (written for this test).
TOOL_TEMPLATE = """
{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}
{% endif %}# Tools
{% for tool in tools %}{{ tool.function | tojson }}
{% endfor %}<|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'system' %}
{%- elif message.role == 'assistant' %}<|im_start|>assistant
{{ message.content }}
{%- for call in message.tool_calls or [] %}<tool_call>{{ call.function | tojson }}</tool_call>{% endfor %}<|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}
"""

CONVERSATION = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello there", "weight": 0},
    {"role": "user", "content": "Bye"},
    {"role": "assistant", "content": "Goodbye"},
]

TOOL_RECORD = Record(
    messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "TEMP 18"},
        {"role": "assistant", "content": "It is 18 C."},
    ],
    tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
)


def trained_text(tokenizer, ids, labels) -> str:
    return tokenizer.decode([i for i, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX])


@pytest.fixture(scope="module")
def tool_tokenizer(tokenizer):
    copied = copy.deepcopy(tokenizer)
    copied.chat_template = TOOL_TEMPLATE
    return copied


def test_weight_zero_turn_is_not_trained(tokenizer):
    ids, labels = tokenize_chat(tokenizer, CONVERSATION)
    assert trained_text(tokenizer, ids, labels) == "Goodbye<|im_end|>"
    assert "Hello there" in tokenizer.decode(ids)


def test_train_on_last_turn_only(tokenizer):
    conversation = [{**message, "weight": 1} if message["role"] == "assistant" else message for message in CONVERSATION]
    conversation[1].pop("weight")
    examples, _ = tokenize_conversations(tokenizer, [conversation], TokenizeConfig(train_on_turns="last"))
    assert trained_text(tokenizer, examples[0]["input_ids"], examples[0]["labels"]) == "Goodbye<|im_end|>"
    examples, _ = tokenize_conversations(tokenizer, [conversation], TokenizeConfig(train_on_turns="all"))
    trained = trained_text(tokenizer, examples[0]["input_ids"], examples[0]["labels"])
    assert trained == "Hello there<|im_end|>Goodbye<|im_end|>"


def test_tool_calls_and_results_rendered_through_the_template(tool_tokenizer):
    examples, stats = tokenize_conversations(tool_tokenizer, [TOOL_RECORD], TokenizeConfig())
    ids, labels = examples[0]["input_ids"], examples[0]["labels"]
    text = tool_tokenizer.decode(ids)
    assert '{"name": "get_weather", "parameters": {"type": "object"}}' in text  # the tool list
    assert "<|im_start|>tool\nTEMP 18<|im_end|>" in text
    trained = trained_text(tool_tokenizer, ids, labels)
    # The call and the final answer are learned; the tool's output is not.
    assert trained == (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call><|im_end|>It is 18 C.<|im_end|>'
    )
    assert stats.examples_out == 1


def test_template_without_tool_support_is_a_clear_error(tokenizer):
    with pytest.raises(
        OpenRecipeError, match=r"SmolLM2.* does not render tool definitions, assistant tool calls, which"
    ):
        tokenize_conversations(tokenizer, [TOOL_RECORD], TokenizeConfig())
    with pytest.raises(OpenRecipeError, match="chat_template"):
        tokenize_chat(tokenizer, TOOL_RECORD.messages)
