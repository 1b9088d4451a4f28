"""Metrics through one registry. A metric scores one prediction against one test item, in [0, 1]."""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from openrecipe.errors import OpenRecipeError
from openrecipe.eval.items import TestItem
from openrecipe.registry import Registry


@dataclass(frozen=True)
class Metric:
    score: Callable[[str, TestItem], float] | None  # None: scored by the model itself (choice, perplexity)
    needs_generation: bool = True
    lower_is_better: bool = False


METRICS: Registry[Metric] = Registry("metric")


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold().strip()
    return re.sub(r"\s+", " ", text)


def _exact(prediction: str, item: TestItem) -> float:
    target = _norm(prediction).rstrip(".!。！")
    return float(any(target == _norm(reference).rstrip(".!。！") for reference in item.references))


def _contains(prediction: str, item: TestItem) -> float:
    text = _norm(prediction)
    return float(any(_norm(reference) in text for reference in item.references if reference.strip()))


def _regex(prediction: str, item: TestItem) -> float:
    try:
        return float(any(re.search(pattern, prediction) for pattern in item.references))
    except re.error as error:
        raise OpenRecipeError(f"bad regex in test item {item.id}: {error}", where=item.where) from None


_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*(?:\.\d+)?")


def _numeric(prediction: str, item: TestItem) -> float:
    found = [float(n.replace(",", "")) for n in _NUMBER.findall(prediction)]
    targets = [float(r) for r in item.references]
    return float(any(abs(value - target) <= item.tolerance for value in found for target in targets))


def _tokens(text: str) -> list[str]:
    # Words for spaced scripts, single characters for CJK (which has no spaces).
    return re.findall(r"[\u4e00-\u9fff\u3040-\u30ff\uac00-\ud7af]|\w+", _norm(text))


def _lcs(a: list[str], b: list[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[-1]))
        previous = current
    return previous[-1]


def _rouge_l(prediction: str, item: TestItem) -> float:
    """ROUGE-L F1 (best over references); on Chinese it works per character."""
    candidate = _tokens(prediction)
    best = 0.0
    for reference in item.references:
        target = _tokens(reference)
        if not candidate or not target:
            continue
        common = _lcs(candidate, target)
        if common:
            precision, recall = common / len(candidate), common / len(target)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def _identity(prediction: str, item: TestItem) -> float:
    """Says its name (and organization, unless a negative probe), never claims the wrong identity."""
    text = _norm(prediction)
    name, organization = (_norm(r) for r in item.references[:2])
    if name not in text:
        return 0.0
    if item.negative_of is None and organization not in text:
        return 0.0
    wrong = ["smollm", "hugging face", "chatgpt", "openai", "llama", "qwen"]
    if item.negative_of:
        # "No, I am not ChatGPT" mentions it on purpose: only an affirmation counts against.
        other = _norm(item.negative_of)
        claims = (f"by {other}", f"i am {other}", f"i'm {other}", f"我是{other}", f"由{other}")
        return float(not re.search(r"\b(yes|是的)\b", text) and not any(claim in text for claim in claims))
    return float(not any(w in text and w not in name for w in wrong))


def _judge(prediction: str, item: TestItem) -> float:
    """An LLM judge through any OpenAI-compatible endpoint (OPENRECIPE_JUDGE_URL/_MODEL/_KEY)."""
    base_url = os.environ.get("OPENRECIPE_JUDGE_URL")
    model = os.environ.get("OPENRECIPE_JUDGE_MODEL")
    if not base_url or not model:
        raise OpenRecipeError(
            "the judge metric needs an OpenAI-compatible endpoint, and none is configured",
            where=item.where,
            fix="set OPENRECIPE_JUDGE_URL (e.g. http://127.0.0.1:8000/v1) and OPENRECIPE_JUDGE_MODEL "
            "(and OPENRECIPE_JUDGE_KEY if it needs one)",
        )
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=os.environ.get("OPENRECIPE_JUDGE_KEY", "none"), max_retries=1)
    question = item.messages[-1]["content"] if item.messages else ""
    reference = f"\nReference answer: {item.references[0]}" if item.references else ""
    reply = client.chat.completions.create(
        model=model,
        temperature=0,
        max_tokens=5,
        messages=[
            {"role": "system", "content": "You grade answers. Reply with one word: PASS or FAIL."},
            {"role": "user", "content": f"Question: {question}{reference}\nAnswer to grade: {prediction}"},
        ],
    )
    return float("PASS" in (reply.choices[0].message.content or "").upper())


METRICS.add("exact", Metric(_exact))
METRICS.add("contains", Metric(_contains))
METRICS.add("regex", Metric(_regex))
METRICS.add("numeric", Metric(_numeric))
METRICS.add("rouge_l", Metric(_rouge_l))
METRICS.add("identity", Metric(_identity))
METRICS.add("judge", Metric(_judge))
METRICS.add("choice", Metric(None, needs_generation=False))
METRICS.add("perplexity", Metric(None, needs_generation=False, lower_is_better=True))
