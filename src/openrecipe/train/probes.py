"""Generation probes during training: stop as soon as the model says what it should."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from openrecipe.config.common import Identity
from openrecipe.train.config import Probe, ProbeSettings


@dataclass
class ProbeResult:
    prompt: str
    reply: str
    passed: bool


def build_probes(settings: ProbeSettings, identity: Identity | None) -> list[Probe]:
    """Held-out identity questions (English and Chinese) plus the user's own probes."""
    probes = list(settings.extra)
    if settings.identity and identity is not None:
        from openrecipe.data.identity import identity_eval_items

        reject = ["SmolLM", "Hugging Face"] if identity.name != "SmolLM" else []
        per_language: dict[str, int] = {}
        for item in identity_eval_items(identity):
            if item.negative_of is not None:
                if not any(p.prompt == item.question for p in probes) and item.language == "en":
                    # "No, I'm not ChatGPT, I'm Nova" names the other identity on purpose; claiming it does not.
                    probes.append(
                        Probe(prompt=item.question, expect=[identity.name], reject=affirmations(item.negative_of))
                    )
                continue
            if per_language.get(item.language, 0) < 2:  # two held-out phrasings per language
                per_language[item.language] = per_language.get(item.language, 0) + 1
                probes.append(Probe(prompt=item.question, expect=[identity.name, identity.organization], reject=reject))
    return probes


def affirmations(other: str) -> list[str]:
    """Phrases that claim another identity ("trained by Hugging Face", "I'm ChatGPT")."""
    return [f"by {other}", f"i am {other}", f"i'm {other}", f"我是{other}", f"由{other}"]


_NEGATION = re.compile(r"\b(not|never|no)\b|n't|不|没")


def _claims(lowered: str, phrase: str) -> bool:
    """True when `phrase` occurs outside a denial: "I was not trained by X" names X without claiming it."""
    start = lowered.find(phrase)
    while start != -1:
        clause = re.split(r"[.!?;,。！？；，]", lowered[:start])[-1]
        if not _NEGATION.search(clause):
            return True
        start = lowered.find(phrase, start + 1)
    return False


def passes(reply: str, probe: Probe) -> bool:
    lowered = reply.lower()
    return all(expected.lower() in lowered for expected in probe.expect) and not any(
        _claims(lowered, bad.lower()) for bad in probe.reject
    )


@torch.no_grad()
def run_probes(
    model,
    tokenizer,
    probes: list[Probe],
    system_prompt: str | None,
    device: torch.device,
    autocast,
    max_new_tokens: int,
) -> list[ProbeResult]:
    """Greedy replies; model mode and RNG state are restored so probing never changes the trajectory."""
    from openrecipe.models.generation import GenerationSettings, build_messages, generate_texts
    from openrecipe.models.loading import LoadedModel

    if not probes:
        return []
    rng = torch.get_rng_state()
    was_training = model.training
    model.eval()
    model.config.use_cache = True
    try:
        loaded = LoadedModel(model, tokenizer, None, device, torch.float32)  # type: ignore[arg-type]
        with autocast:
            replies = generate_texts(
                loaded,
                [build_messages(p.prompt, system_prompt) for p in probes],
                GenerationSettings(max_new_tokens=max_new_tokens),
                batch_size=len(probes),
            )
    finally:
        model.config.use_cache = False
        model.train(was_training)
        torch.set_rng_state(rng)
    return [ProbeResult(p.prompt, reply, passes(reply, p)) for p, reply in zip(probes, replies, strict=True)]
