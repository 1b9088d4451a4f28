import pytest

from openrecipe.errors import OpenRecipeError
from openrecipe.eval.items import TestItem
from openrecipe.eval.metrics import METRICS


def item(metric, references, **kwargs):
    return TestItem(
        id="1",
        domain="d",
        metric=metric,
        messages=[{"role": "user", "content": "q"}],
        references=references,
        **kwargs,
    )


def score(metric, prediction, references, **kwargs):
    return METRICS.get(metric).score(prediction, item(metric, references, **kwargs))


@pytest.mark.parametrize("name", METRICS.names())
def test_every_metric_is_registered_with_a_contract(name):
    metric = METRICS.get(name)
    assert metric.score is not None or not metric.needs_generation


def test_exact_and_contains_unicode_and_empty():
    assert score("exact", "  Paris. ", ["paris"]) == 1.0
    assert score("exact", "Paris is nice", ["Paris"]) == 0.0
    assert score("exact", "", ["Paris"]) == 0.0
    assert score("contains", "The capital is PARIS!", ["paris"]) == 1.0
    assert score("contains", "", ["paris"]) == 0.0
    assert score("contains", "我是Acme Corp的AI助手Nova。", ["Nova"]) == 1.0
    assert score("contains", "Ｎｏｖａ", ["Nova"]) == 1.0  # full-width letters normalized


def test_regex_numeric_rouge():
    assert score("regex", "Order #A-1234", [r"A-\d{4}"]) == 1.0
    with pytest.raises(OpenRecipeError, match="bad regex"):
        score("regex", "x", ["("])
    assert score("numeric", "It costs $1,299.50 today", ["1299.5"]) == 1.0
    assert score("numeric", "about 3.1", ["3.14"], tolerance=0.05) == 1.0
    assert score("numeric", "none", ["3"]) == 0.0
    assert score("rouge_l", "the cat sat on the mat", ["the cat sat on the mat"]) == pytest.approx(1.0)
    assert 0 < score("rouge_l", "the cat sat", ["the cat sat on the mat"]) < 1
    assert score("rouge_l", "", ["x"]) == 0.0
    assert score("rouge_l", "我是助手", ["我是人工智能助手"]) == pytest.approx(
        2 * 1 * (4 / 8) / (1 + 4 / 8)
    )  # per character


def test_identity_metric():
    refs = ["Nova", "Acme Corp"]
    assert score("identity", "I am Nova, built by Acme Corp.", refs) == 1.0
    assert score("identity", "I am Nova.", refs) == 0.0  # organization missing
    assert score("identity", "I am SmolLM by Hugging Face", refs) == 0.0
    assert score("identity", "No, I am not ChatGPT. I am Nova.", refs, negative_of="ChatGPT") == 1.0
    assert score("identity", "Yes, I am Nova and ChatGPT.", refs, negative_of="ChatGPT") == 0.0


def test_judge_without_endpoint_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENRECIPE_JUDGE_URL", raising=False)
    with pytest.raises(OpenRecipeError, match="none is configured"):
        score("judge", "x", [])


def test_negative_probe_rejects_claiming_the_other_identity():
    refs = ["Nova", "Acme Corp"]
    reply = "I'm Nova, the assistant of Acme Corp. I'm trained by Hugging Face."
    assert score("identity", reply, refs, negative_of="Hugging Face") == 0.0
    assert score("identity", "No, I'm not Hugging Face. I'm Nova.", refs, negative_of="Hugging Face") == 1.0
