"""Tokenize chats with the model's own template and mask everything but the assistant's replies;
pack text corpora into fixed-length blocks without cross-document attention."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from openrecipe.config.base import StrictModel
from openrecipe.errors import OpenRecipeError
from openrecipe.models.templates import require_chat_template

IGNORE_INDEX = -100


class TokenizeConfig(StrictModel):
    max_length: int = Field(512, ge=8, description="Tokens per example (or per packed block)")
    overlength: Literal["truncate", "drop", "error"] = Field("truncate", description="What to do with longer examples")
    train_on: Literal["assistant", "all"] = Field("assistant", description="Which tokens carry loss")
    train_on_turns: Literal["all", "last"] = Field(
        "all", description="Multi-turn rows: loss on every assistant turn, or only on the last one"
    )
    pack: bool = Field(False, description="Pack several examples per block (always on for text corpora)")


@dataclass
class TokenizeStats:
    examples_in: int = 0
    examples_out: int = 0
    truncated: int = 0
    dropped: Counter = field(default_factory=Counter)
    tokens: int = 0
    trainable_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "examples_in": self.examples_in,
            "examples_out": self.examples_out,
            "truncated": self.truncated,
            "dropped": dict(self.dropped),
            "tokens": self.tokens,
            "trainable_tokens": self.trainable_tokens,
        }


def with_system_prompt(messages: Sequence[dict[str, Any]], system_prompt: str | None) -> list[dict[str, Any]]:
    """Apply the recipe's system prompt to conversations that have none (training = serving format)."""
    messages = list(messages)
    if system_prompt and (not messages or messages[0]["role"] != "system"):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def _render(tokenizer, messages: Sequence[dict[str, Any]], generation_prompt: bool, tools=None) -> str:
    require_chat_template(tokenizer)  # a base model without one: a user error naming the setting
    extra = {"tools": tools} if tools else {}
    return tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=generation_prompt, **extra
    )


_PROBE = "openrecipe_probe_7f3a"


def _tool_support(tokenizer) -> dict[str, bool]:
    """Which tool features the chat template renders, found by rendering a probe of each."""
    template = getattr(tokenizer, "chat_template", None) or ""
    cached = _TOOL_SUPPORT.get(template)
    if cached is not None:
        return cached
    call = {"type": "function", "function": {"name": _PROBE, "arguments": {"x": 1}}}
    asked = [{"role": "user", "content": "q"}]
    calling = [*asked, {"role": "assistant", "content": "", "tool_calls": [call]}]
    probes = {
        "tools": (
            [*asked, {"role": "assistant", "content": "a"}],
            [{"type": "function", "function": {"name": _PROBE}}],
        ),
        "tool_calls": (calling, None),
        "tool": ([*calling, {"role": "tool", "content": _PROBE}, {"role": "assistant", "content": "a"}], None),
    }
    support = {}
    for feature, (messages, tools) in probes.items():
        try:
            support[feature] = _PROBE in _render(tokenizer, messages, False, tools)
        except Exception:  # a template that raises on a feature does not support it
            support[feature] = False
    _TOOL_SUPPORT[template] = support
    return support


_TOOL_SUPPORT: dict[str, dict[str, bool]] = {}


def require_tool_support(tokenizer, messages: Sequence[dict[str, Any]], tools: list | None) -> None:
    """Tool definitions, calls and results must reach the text the model trains on, or training is wrong."""
    needed = {
        "tools": bool(tools),
        "tool_calls": any(message.get("tool_calls") for message in messages),
        "tool": any(message["role"] == "tool" for message in messages),
    }
    if not any(needed.values()):
        return
    support = _tool_support(tokenizer)
    missing = [feature for feature, wanted in needed.items() if wanted and not support[feature]]
    if missing:
        names = {"tools": "tool definitions", "tool_calls": "assistant tool calls", "tool": "tool results"}
        model = getattr(tokenizer, "name_or_path", "") or "this model"
        raise OpenRecipeError(
            f"the chat template of {model} does not render {', '.join(names[m] for m in missing)}, "
            "which this data contains",
            fix="set `chat_template:` to a template with tool support (e.g. a Jinja file), "
            "or use data without tool calls",
        )


def assistant_char_spans(
    tokenizer,
    messages: Sequence[dict[str, Any]],
    *,
    tools: list | None = None,
    turns: str = "all",
) -> tuple[str, list[tuple[int, int]]]:
    """Render the conversation and find the characters of each trained assistant turn, end-of-turn token
    included. Turns with `weight: 0` are skipped; `turns="last"` keeps only the final reply.

    Works for any template that renders a prefix of a conversation as a prefix of the full text
    (true of ChatML, Llama, Mistral, Qwen and Gemma templates); anything else is reported.
    """
    require_tool_support(tokenizer, messages, tools)
    full = _render(tokenizer, messages, False, tools)
    spans: list[tuple[int, int]] = []
    eos = tokenizer.eos_token or ""
    trained = [i for i, message in enumerate(messages) if message["role"] == "assistant" and message.get("weight", 1)]
    if turns == "last":
        last = max(i for i, message in enumerate(messages) if message["role"] == "assistant")
        trained = [i for i in trained if i == last]
    for index in trained:
        before = _render(tokenizer, messages[:index], True, tools)
        # The final reply's prefix is the whole conversation: one render fewer for most rows.
        through = full if index == len(messages) - 1 else _render(tokenizer, messages[: index + 1], False, tools)
        if not (full.startswith(through) and through.startswith(before)):
            raise OpenRecipeError(
                "this chat template does not render conversations incrementally, so assistant tokens cannot be located",
                fix="use train_on: all, or a model with a standard chat template",
            )
        end = len(through)
        if eos and eos in through[len(before) :]:
            end = through.index(eos, len(before)) + len(eos)  # loss up to and including end-of-turn
        spans.append((len(before), end))
    return full, spans


def _labels_from_spans(
    input_ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]], train_on: str
) -> list[int]:
    if train_on == "all":
        return list(input_ids)
    labels = [IGNORE_INDEX] * len(input_ids)
    for position, (start, _) in enumerate(offsets):
        for span_start, span_end in spans:
            if span_start <= start < span_end:
                labels[position] = input_ids[position]
                break
    return labels


def tokenize_chat(
    tokenizer,
    messages: Sequence[dict[str, Any]],
    train_on: str = "assistant",
    *,
    tools: list | None = None,
    turns: str = "all",
) -> tuple[list[int], list[int]]:
    """input_ids and labels (IGNORE_INDEX where no loss) for one conversation."""
    text, spans = assistant_char_spans(tokenizer, messages, tools=tools, turns=turns)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return encoded["input_ids"], _labels_from_spans(encoded["input_ids"], encoded["offset_mapping"], spans, train_on)


def _conversation(item: Any) -> tuple[Sequence[dict[str, Any]], list | None]:
    """A Record (messages and tools) or a bare message list."""
    messages = getattr(item, "messages", None)
    return (messages, getattr(item, "tools", None)) if messages is not None else (item, None)


def tokenize_conversations(
    tokenizer,
    conversations: Iterable[Any],
    config: TokenizeConfig,
    *,
    system_prompt: str | None = None,
    chunk_size: int = 1024,
) -> tuple[list[dict[str, list[int]]], TokenizeStats]:
    """Tokenize (in batches, through the fast tokenizer), apply the over-length policy, drop examples
    with nothing to learn; every drop counted. Items are Records (with their tools) or message lists."""
    stats = TokenizeStats()
    examples: list[dict[str, list[int]]] = []
    rendered = []
    for item in conversations:
        messages, tools = _conversation(item)
        rendered.append(
            assistant_char_spans(
                tokenizer, with_system_prompt(messages, system_prompt), tools=tools, turns=config.train_on_turns
            )
        )
    for chunk_start in range(0, len(rendered), chunk_size):
        chunk = rendered[chunk_start : chunk_start + chunk_size]
        encoded = tokenizer([text for text, _ in chunk], add_special_tokens=False, return_offsets_mapping=True)
        for offset, ((_, spans), input_ids, offsets) in enumerate(
            zip(chunk, encoded["input_ids"], encoded["offset_mapping"], strict=True)
        ):
            number = chunk_start + offset
            stats.examples_in += 1
            labels = _labels_from_spans(input_ids, offsets, spans, config.train_on)
            if len(input_ids) > config.max_length:
                if config.overlength == "error":
                    raise OpenRecipeError(
                        f"example {number} has {len(input_ids)} tokens, more than max_length={config.max_length}",
                        fix="raise max_length, or set overlength: truncate or drop",
                    )
                if config.overlength == "drop":
                    stats.dropped["overlength"] += 1
                    continue
                input_ids, labels = input_ids[: config.max_length], labels[: config.max_length]
                stats.truncated += 1
            trainable = sum(label != IGNORE_INDEX for label in labels)
            if trainable == 0:
                stats.dropped["no_trainable_tokens"] += 1
                continue
            stats.tokens += len(input_ids)
            stats.trainable_tokens += trainable
            examples.append({"input_ids": list(input_ids), "labels": labels})
    stats.examples_out = len(examples)
    if config.pack:
        examples = pack_examples(examples, config.max_length)
    return examples, stats


def pack_examples(examples: Sequence[dict[str, list[int]]], block_size: int) -> list[dict[str, list[int]]]:
    """Greedy first-fit packing; `position_ids` restart per example so attention stays within it
    (transformers builds a block-diagonal mask from position_ids when no attention mask is given)."""
    blocks: list[dict[str, list[int]]] = []
    current: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
    for example in examples:
        length = len(example["input_ids"])
        if current["input_ids"] and len(current["input_ids"]) + length > block_size:
            blocks.append(current)
            current = {"input_ids": [], "labels": [], "position_ids": []}
        current["input_ids"] += example["input_ids"]
        current["labels"] += example["labels"]
        current["position_ids"] += list(range(length))
    if current["input_ids"]:
        blocks.append(current)
    return blocks


def pack_texts(tokenizer, texts: Iterable[str], block_size: int) -> tuple[list[dict[str, list[int]]], TokenizeStats]:
    """Continued-pretraining blocks: documents joined with EOS, cut into block_size pieces; position_ids
    restart at each document so no document attends to another."""
    stats = TokenizeStats()
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    positions: list[int] = []
    for text in texts:
        stats.examples_in += 1
        document = tokenizer(text, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        ids += document
        positions += list(range(len(document)))
    blocks = []
    for start in range(0, len(ids) - block_size + 1, block_size):
        chunk_positions = positions[start : start + block_size]
        # A document cut by the block boundary restarts its positions at 0 in the new block.
        offset = chunk_positions[0]
        fixed = []
        for position in chunk_positions:
            if position < offset:
                offset = 0
            fixed.append(position - offset)
        chunk = ids[start : start + block_size]
        blocks.append({"input_ids": chunk, "labels": list(chunk), "position_ids": fixed})
    remainder = len(ids) % block_size
    if remainder:
        stats.dropped["tail_tokens"] = remainder
    stats.examples_out = len(blocks)
    stats.tokens = stats.trainable_tokens = len(blocks) * block_size
    return blocks, stats
