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


def cache_keyword(model) -> str:
    """The keyword a model's forward (and generate) takes its key/value cache by: transformers 5 renamed
    `past_key_values` to `cache`; models whose forward still names the old one get that. A PEFT wrapper passes
    it through to its base model, whose signature decides."""
    import inspect

    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(target.forward).parameters else "past_key_values"


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
    loaded.model(input_ids=prefix, use_cache=True, **{keyword: cache})
    cache.batch_repeat_interleave(len(rows))
    width = max(len(row) for row in rows) - shared
    pad = loaded.tokenizer.pad_token_id
    input_ids = torch.full((len(rows), shared + width), pad, dtype=torch.long, device=device)
    mask = torch.zeros_like(input_ids)
    input_ids[:, :shared] = prefix
    mask[:, :shared] = 1
    for index, row in enumerate(rows):
        own = row[shared:]
        input_ids[index, shared + width - len(own) :] = torch.tensor(own, device=device)
        mask[index, shared + width - len(own) :] = 1
    output = loaded.model.generate(
        input_ids=input_ids, attention_mask=mask, **{keyword: cache}, **settings.kwargs(loaded.tokenizer)
    )
    return [
        loaded.tokenizer.decode(output[index, shared + width :], skip_special_tokens=True).strip()
        for index in range(len(rows))
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
    """Generate one reply per conversation (or raw prompt), in input order, batched with left padding; a
    start that a whole batch shares is computed once for it."""
    texts = [
        str(item) if raw else render_chat(loaded.tokenizer, item)  # type: ignore[arg-type]
        for item in conversations
    ]
    # Sorting by length reduces padding; results are put back in input order.
    order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
    replies: list[str] = [""] * len(texts)
    torch.manual_seed(settings.seed)
    special = not _has_template(loaded)
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        rows = [loaded.tokenizer(texts[i], add_special_tokens=special)["input_ids"] for i in indices]
        shared = shared_prefix_length(rows)
        if shared >= _MIN_SHARED_TOKENS:
            batch_replies = _generate_with_shared_prefix(loaded, rows, shared, settings)
        else:
            batch = _encode_batch(loaded, [texts[index] for index in indices])
            output = loaded.model.generate(**batch, **settings.kwargs(loaded.tokenizer))
            prompt_length = batch["input_ids"].shape[1]
            batch_replies = [
                loaded.tokenizer.decode(output[row, prompt_length:], skip_special_tokens=True).strip()
                for row in range(len(indices))
            ]
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
