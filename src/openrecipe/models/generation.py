"""Chat and batched generation on top of `model.generate`, with the model's own chat template."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from openrecipe.models.loading import LoadedModel

Message = dict[str, str]


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def kwargs(self, tokenizer) -> dict:
        sample = self.temperature > 0
        out = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": sample,
            "pad_token_id": tokenizer.pad_token_id,
        }
        if sample:
            out.update(temperature=self.temperature, top_p=self.top_p)
        else:
            # Override sampling defaults some models ship in generation_config.json.
            out.update(temperature=None, top_p=None, top_k=None)
        return out


def build_messages(prompt: str, system: str | None = None, history: Sequence[Message] = ()) -> list[Message]:
    messages: list[Message] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.extend(history)
    messages.append({"role": "user", "content": prompt})
    return messages


def render_chat(tokenizer, messages: Sequence[Message], *, add_generation_prompt: bool = True) -> str:
    """The exact prompt text the model sees; base models without a template get plain text."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )
    return "\n\n".join(message["content"] for message in messages) + ("\n\n" if add_generation_prompt else "")


def _encode_batch(loaded: LoadedModel, texts: list[str]) -> dict[str, torch.Tensor]:
    tokenizer = loaded.tokenizer
    tokenizer.padding_side = "left"
    # Chat templates already contain the BOS/special tokens they need.
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not _has_template(loaded))
    return {key: value.to(loaded.device) for key, value in batch.items()}


def _has_template(loaded: LoadedModel) -> bool:
    return bool(getattr(loaded.tokenizer, "chat_template", None))


def _forward_parameters(model) -> set[str]:
    import inspect

    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(inspect.signature(target.forward).parameters)


def _last_logits_only(model) -> dict:
    """A prefill needs no logits (or only the last row's): skipping the vocabulary projection for the other
    positions saves a fifth of a small model's prefill."""
    return {"logits_to_keep": 1} if "logits_to_keep" in _forward_parameters(model) else {}


def cache_keyword(model) -> str:
    """The keyword a model's forward (and generate) takes its key/value cache by: transformers 5 renamed
    `past_key_values` to `cache`; models whose forward still names the old one get that. A PEFT wrapper passes
    it through to its base model, whose signature decides."""
    return "cache" if "cache" in _forward_parameters(model) else "past_key_values"


_MIN_SHARED_TOKENS = 16  # a shorter common start saves less than its own forward costs


def shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every row has in common, leaving each row at least one token of its own."""
    if len(rows) < 2:
        return 0
    limit = min(len(row) for row in rows) - 1
    first = rows[0]
    length = 0
    while length < limit and all(row[length] == first[length] for row in rows):
        length += 1
    return length


def _shared_then_left_padded(
    rows: list[list[int]], shared: int, width: int, pad: int, device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask laid out [shared start | left padding | own tokens], `width` columns after
    the start; positions taken from the mask's running count put every token where a one-row forward does."""
    input_ids = torch.full((len(rows), shared + width), pad, dtype=torch.long, device=device)
    mask = torch.zeros_like(input_ids)
    mask[:, :shared] = 1
    for index, row in enumerate(rows):
        input_ids[index, :shared] = torch.tensor(row[:shared], device=device)
        own = row[shared:]
        input_ids[index, shared + width - len(own) :] = torch.tensor(own, dtype=torch.long, device=device)
        mask[index, shared + width - len(own) :] = 1
    return input_ids, mask


def _generate_with_shared_prefix(
    loaded: LoadedModel, rows: list[list[int]], shared: int, settings: GenerationSettings
) -> list[str]:
    """The common start (the system turn every eval or replay prompt begins with) runs once; its keys and
    values are copied to every row, and each row's own tokens follow after left padding. Positions come
    from the attention mask, so every token sits where it would without sharing."""
    from transformers import DynamicCache

    device = loaded.device
    prefix = torch.tensor([rows[0][:shared]], device=device)
    cache = DynamicCache(config=loaded.model.config)
    keyword = cache_keyword(loaded.model)
    loaded.model(input_ids=prefix, use_cache=True, **{keyword: cache}, **_last_logits_only(loaded.model))
    cache.batch_repeat_interleave(len(rows))
    width = max(len(row) for row in rows) - shared
    input_ids, mask = _shared_then_left_padded(rows, shared, width, loaded.tokenizer.pad_token_id, device)
    output = loaded.model.generate(
        input_ids=input_ids, attention_mask=mask, **{keyword: cache}, **settings.kwargs(loaded.tokenizer)
    )
    return [
        loaded.tokenizer.decode(output[index, shared + width :], skip_special_tokens=True).strip()
        for index in range(len(rows))
    ]


# Decoding is bound by reading the weights, not by arithmetic, on a CPU: one step for 128 rows costs about
# what one for 32 does. So rows are prefilled in batches of `batch_size` (little padding among rows of similar
# length) and then decode together, as many as fit this much key/value cache.
DECODE_CACHE_BYTES = 2 << 30


@dataclass(frozen=True)
class _CacheShape:
    """What one full-attention key/value cache layer holds per row and token."""

    layers: int
    heads: int
    head_dim: int
    dtype: torch.dtype

    @property
    def bytes_per_token(self) -> int:
        return self.layers * 2 * self.heads * self.head_dim * self.dtype.itemsize


def _cache_shape(model) -> _CacheShape | None:
    """The shape of a static cache for this model; None where its cache is not a stack of plain full-attention
    layers (sliding windows, recurrent or mixed layers keep the one-batch path, which needs no such layout)."""
    from transformers import StaticCache
    from transformers.cache_utils import StaticLayer

    try:
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        probe = StaticCache(config=model.config, max_cache_len=2)
        shape = _CacheShape(
            layers=config.num_hidden_layers,
            heads=getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
            dtype=next(p.dtype for p in model.parameters() if p.is_floating_point()),
        )
    except (AttributeError, TypeError, ValueError, StopIteration):
        return None
    if len(probe.layers) != shape.layers or any(type(layer) is not StaticLayer for layer in probe.layers):
        return None
    return shape


def _decode_groups(lengths: list[int], batch_size: int, max_new_tokens: int, kv_bytes: int | None) -> list[range]:
    """Consecutive runs of the length-sorted rows that decode together: whole prefill batches, as many as the
    cache budget holds (every row is padded to the group's longest prompt plus the reply)."""
    if kv_bytes is None:
        return [range(start, min(start + batch_size, len(lengths))) for start in range(0, len(lengths), batch_size)]
    groups: list[range] = []
    start = 0
    while start < len(lengths):
        end = min(start + batch_size, len(lengths))
        while end < len(lengths):
            grown = min(end + batch_size, len(lengths))
            if (grown - start) * (lengths[grown - 1] + max_new_tokens) * kv_bytes > DECODE_CACHE_BYTES:
                break
            end = grown
        groups.append(range(start, end))
        start = end
    return groups


def _prefill_into(loaded: LoadedModel, cache, rows: list[list[int]], shared: int, width: int, batch_size: int):
    """Fill a static cache with every token but each row's last: the shared start once, then each batch of rows
    on its own padded width, written right-aligned so all rows end in the same column."""
    from transformers import DynamicCache

    model, device = loaded.model, loaded.device
    keyword = cache_keyword(model)
    extra = _last_logits_only(model)
    end = shared + width - 1  # the column after every row's second-to-last token
    prefix = DynamicCache(config=model.config)
    if shared:
        model(input_ids=torch.tensor([rows[0][:shared]], device=device), use_cache=True, **{keyword: prefix}, **extra)
    for start in range(0, len(rows), batch_size):
        chunk = [row[:-1] for row in rows[start : start + batch_size]]  # the last tokens decode together
        own = max(len(row) for row in chunk) - shared
        if own == 0:
            continue
        input_ids, mask = _shared_then_left_padded(chunk, shared, own, loaded.tokenizer.pad_token_id, device)
        work = DynamicCache(config=model.config)
        for layer_index, layer in enumerate(prefix.layers if shared else ()):
            work.update(
                layer.keys.expand(len(chunk), -1, -1, -1).contiguous(),
                layer.values.expand(len(chunk), -1, -1, -1).contiguous(),
                layer_index,
            )
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
        model(
            input_ids=input_ids[:, shared:],
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{keyword: work},
            **extra,
        )
        for target, layer in zip(cache.layers, work.layers, strict=True):
            target.keys[start : start + len(chunk), :, end - own : end] = layer.keys[:, :, shared:]
            target.values[start : start + len(chunk), :, end - own : end] = layer.values[:, :, shared:]
    for target, layer in zip(cache.layers, prefix.layers if shared else (), strict=False):
        target.keys[:, :, :shared] = layer.keys
        target.values[:, :, :shared] = layer.values


def _generate_group(
    loaded: LoadedModel, rows: list[list[int]], settings: GenerationSettings, batch_size: int, shape: _CacheShape
) -> list[str]:
    """Generate for rows sorted by length: prefilled batch by batch into one static cache, decoded as one batch.
    The layout is [shared start | left padding | own tokens]; positions come from the attention mask, so every
    token sits where it would in a one-row forward."""
    from transformers import StaticCache

    model, device = loaded.model, loaded.device
    shared = shared_prefix_length(rows)
    shared = shared if shared >= _MIN_SHARED_TOKENS else 0
    width = max(len(row) for row in rows) - shared
    cache = StaticCache(config=model.config, max_cache_len=shared + width + settings.max_new_tokens)
    like = torch.empty((len(rows), shape.heads, 1, shape.head_dim), dtype=shape.dtype, device=device)
    for layer in cache.layers:
        layer.lazy_initialization(like, like)
    _prefill_into(loaded, cache, rows, shared, width, batch_size)
    for layer in cache.layers:
        layer.cumulative_length.fill_(shared + width - 1)
    input_ids, mask = _shared_then_left_padded(rows, shared, width, loaded.tokenizer.pad_token_id, device)
    output = model.generate(
        input_ids=input_ids,
        attention_mask=mask,
        **{cache_keyword(model): cache},
        **settings.kwargs(loaded.tokenizer),
        disable_compile=True,  # a compiled graph per group's shape would cost more than it saves
    )
    return [
        loaded.tokenizer.decode(output[index, shared + width :], skip_special_tokens=True).strip()
        for index in range(len(rows))
    ]


def _generate_batch(loaded: LoadedModel, rows: list[list[int]], texts: list[str], settings: GenerationSettings):
    """One left-padded batch through `generate` (models whose cache is not plain full attention)."""
    shared = shared_prefix_length(rows)
    if shared >= _MIN_SHARED_TOKENS:
        return _generate_with_shared_prefix(loaded, rows, shared, settings)
    batch = _encode_batch(loaded, texts)
    output = loaded.model.generate(**batch, **settings.kwargs(loaded.tokenizer))
    prompt_length = batch["input_ids"].shape[1]
    return [
        loaded.tokenizer.decode(output[row, prompt_length:], skip_special_tokens=True).strip()
        for row in range(len(rows))
    ]


@torch.inference_mode()
def generate_texts(
    loaded: LoadedModel,
    conversations: Sequence[Sequence[Message]] | Sequence[str],
    settings: GenerationSettings = GenerationSettings(),
    *,
    batch_size: int = 8,
    raw: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Generate one reply per conversation (or raw prompt), in input order. Prompts are sorted by length and
    prefilled `batch_size` at a time; a start they share is computed once; rows then decode together as far as
    `DECODE_CACHE_BYTES` of cache allows."""
    texts = [
        str(item) if raw else render_chat(loaded.tokenizer, item)  # type: ignore[arg-type]
        for item in conversations
    ]
    special = not _has_template(loaded)
    tokens = [loaded.tokenizer(text, add_special_tokens=special)["input_ids"] for text in texts]
    # Sorting by length reduces padding; results are put back in input order.
    order = sorted(range(len(texts)), key=lambda index: len(tokens[index]))
    shape = _cache_shape(loaded.model)
    kv_bytes = shape.bytes_per_token if shape is not None else None
    replies: list[str] = [""] * len(texts)
    torch.manual_seed(settings.seed)
    lengths = [len(tokens[index]) for index in order]
    for group in _decode_groups(lengths, batch_size, settings.max_new_tokens, kv_bytes):
        indices = [order[position] for position in group]
        rows = [tokens[index] for index in indices]
        if shape is None or len(indices) <= batch_size:  # one prefill batch: nothing to gather
            batch_replies = _generate_batch(loaded, rows, [texts[index] for index in indices], settings)
        else:
            batch_replies = _generate_group(loaded, rows, settings, batch_size, shape)
        for index, reply in zip(indices, batch_replies, strict=True):
            replies[index] = reply
        if on_batch:
            on_batch(len(indices))
    return replies


def stream_reply(
    loaded: LoadedModel, messages: Sequence[Message], settings: GenerationSettings = GenerationSettings()
) -> Iterator[str]:
    """Yield the reply's text piece by piece as the model produces it."""
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)
    batch = _encode_batch(loaded, [render_chat(loaded.tokenizer, messages)])
    torch.manual_seed(settings.seed)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with torch.inference_mode():
                loaded.model.generate(**batch, **settings.kwargs(loaded.tokenizer), streamer=streamer)
        except BaseException as error:  # surfaced in the caller's thread below
            errors.append(error)
            streamer.end()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    yield from streamer
    thread.join()
    if errors:
        raise errors[0]
