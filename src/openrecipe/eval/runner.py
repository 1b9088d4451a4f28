"""Score one model variant on test items: generation metrics, option log-likelihood, perplexity —
cached by (model content, test set, settings) so re-runs are instant."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch

from openrecipe.eval.items import TestItem
from openrecipe.eval.metrics import METRICS
from openrecipe.eval.retrieval import Retriever
from openrecipe.eval.testsets import test_set_digest
from openrecipe.models.refs import ModelRef, resolve_model_ref
from openrecipe.utils.fs import atomic_write_json, openrecipe_home
from openrecipe.utils.hashing import sha256_json


@dataclass
class Variant:
    name: str
    model: ModelRef | str
    system_prompt: str | None = None
    dtype: str = "auto"
    retriever: Retriever | None = None  # top-k passages from the recipe's own data in every prompt

    def __post_init__(self) -> None:
        self.model = resolve_model_ref(self.model)  # a name is resolved once, here


def _messages(item: TestItem, variant: Variant) -> list[dict[str, str]]:
    messages = list(item.messages or [])
    if variant.system_prompt and (not messages or messages[0]["role"] != "system"):
        messages.insert(0, {"role": "system", "content": variant.system_prompt})
    return variant.retriever.augment(messages) if variant.retriever is not None else messages


@torch.inference_mode()
def _choice_scores(loaded, items: list[TestItem], variant: Variant) -> dict[str, tuple[str, float]]:
    """Pick the option with the highest total log-likelihood as the assistant's reply."""
    from openrecipe.models.generation import render_chat

    out = {}
    tokenizer = loaded.tokenizer
    for item in items:
        prompt = render_chat(tokenizer, _messages(item, variant))
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        totals = []
        for option in item.choices:
            option_ids = tokenizer(option, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt_ids + option_ids], device=loaded.device)
            logits = loaded.model(input_ids=ids, use_cache=False).logits[0, len(prompt_ids) - 1 : -1].float()
            log_probs = torch.log_softmax(logits, dim=-1)
            totals.append(float(log_probs.gather(-1, torch.tensor(option_ids, device=loaded.device)[:, None]).sum()))
        best = item.choices[max(range(len(totals)), key=totals.__getitem__)]
        out[item.id] = (best, float(best == item.references[0]))
    return out


@dataclass
class SharedModel:
    """One loaded model and its per-domain perplexities, reused by the variants that run it (base+prompt
    and base+retrieval differ only in the prompt, so the model loads once and perplexity runs once)."""

    fingerprint: str
    loaded: Any = None
    perplexity: dict[str, Any] | None = None


def evaluate_variant(
    variant: Variant,
    items: list[TestItem],
    *,
    batch_size: int = 8,
    use_cache: bool = True,
    loaded=None,
    shared: SharedModel | None = None,
) -> dict[str, Any]:
    """Per-item predictions and scores plus per-domain perplexity, for one variant."""
    from openrecipe.eval.fingerprint import model_fingerprint

    fingerprint = shared.fingerprint if shared is not None else model_fingerprint(variant.model)
    settings = {
        "system_prompt": variant.system_prompt,
        "dtype": variant.dtype,
        "greedy": True,
        "batch_size": batch_size,  # left padding changes a batch's float sums, and so can a greedy reply
        "version": 3,  # 3: rows prefilled in batches decode together (models.generation)
        "retrieval": variant.retriever.digest if variant.retriever is not None else None,
    }
    key = sha256_json({"model": fingerprint, "tests": test_set_digest(items), **settings})
    cache_path = openrecipe_home() / "eval-cache" / f"{key}.json"
    if use_cache and cache_path.is_file():
        cached = json.loads(cache_path.read_text())
        cached["cache_hit"] = True
        return cached
    from openrecipe.models.generation import GenerationSettings, generate_texts
    from openrecipe.models.loading import load_model
    from openrecipe.models.scoring import perplexity

    started = time.perf_counter()
    if loaded is None and shared is not None:
        shared.loaded = shared.loaded or load_model(variant.model, dtype=variant.dtype)
        loaded = shared.loaded
    loaded = loaded or load_model(variant.model, dtype=variant.dtype)
    results: list[dict[str, Any]] = []
    generation = [i for i in items if METRICS.get(i.metric).needs_generation]
    by_length: dict[int, list[TestItem]] = defaultdict(list)
    for item in generation:
        by_length[item.max_new_tokens].append(item)
    for max_new_tokens, group in by_length.items():
        replies = generate_texts(
            loaded,
            [_messages(item, variant) for item in group],
            GenerationSettings(max_new_tokens=max_new_tokens),
            batch_size=batch_size,
        )
        for item, reply in zip(group, replies, strict=True):
            results.append(
                {
                    "id": item.id,
                    "domain": item.domain,
                    "metric": item.metric,
                    "prediction": reply,
                    "score": METRICS.get(item.metric).score(reply, item),
                }
            )
    choices = [i for i in items if i.metric == "choice"]
    for item_id, (picked, score) in _choice_scores(loaded, choices, variant).items():
        item = next(i for i in choices if i.id == item_id)
        results.append({"id": item_id, "domain": item.domain, "metric": "choice", "prediction": picked, "score": score})
    if shared is not None and shared.perplexity is not None:
        perplexities = shared.perplexity  # the prompt does not enter perplexity: same model, same numbers
    else:
        perplexities = {}
        texts: dict[str, list[str]] = defaultdict(list)
        for item in items:
            if item.metric == "perplexity":
                texts[item.domain].append(item.text or "")
        for domain, domain_texts in texts.items():
            perplexities[domain] = perplexity(loaded, domain_texts)
        if shared is not None:
            shared.perplexity = perplexities
    outcome = {
        "variant": variant.name,
        "model": variant.model.name,
        "results": results,
        "perplexity": perplexities,
        "seconds": round(time.perf_counter() - started, 2),
        "cache_hit": False,
    }
    atomic_write_json(cache_path, outcome)
    return outcome
