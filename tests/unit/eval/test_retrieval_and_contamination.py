import json
from pathlib import Path

from openrecipe.data.records import Record
from openrecipe.eval.contamination import ContaminationSettings, check_contamination, summary_lines
from openrecipe.eval.items import TestItem
from openrecipe.eval.retrieval import RetrievalSettings, Retriever, passages_from_records
from openrecipe.eval.testsets import load_test_set

ROOT = Path(__file__).resolve().parents[3]


def _chat(question: str, answer: str) -> Record:
    return Record(messages=[{"role": "user", "content": question}, {"role": "assistant", "content": answer}])


def _item(prompt: str, domain: str = "d", item_id: str = "1") -> TestItem:
    return TestItem(id=item_id, domain=domain, metric="contains", messages=[{"role": "user", "content": prompt}])


def test_passages_merge_questions_sharing_an_answer_and_keep_headings():
    records = [
        _chat("Is shipping free?", "Shipping is free on orders over $50."),
        _chat("Do you charge for delivery?", "Shipping is free on orders over $50."),
        _chat("How long does a refund take?", "Refunds take 5 business days."),
        Record(text="# Acme Aero Desk\n\nIt sells for $499.\n\n## Troubleshooting\n\nHold both buttons for 5 seconds."),
    ]
    passages = passages_from_records(records)
    assert passages[0] == "Q: Is shipping free? / Do you charge for delivery?\nA: Shipping is free on orders over $50."
    assert "Acme Aero Desk: It sells for $499." in passages
    assert "Acme Aero Desk — Troubleshooting: Hold both buttons for 5 seconds." in passages
    assert len(passages) == 4


def test_bm25_finds_the_passage_that_answers_and_puts_it_in_the_system_message():
    passages = [
        "Q: How long does a refund take?\nA: Refunds take 5 business days.",
        "Q: Is shipping free?\nA: Shipping is free on orders over $50.",
        "Acme Aero Desk: It sells for $499 and has a 5 years warranty.",
    ]
    retriever = Retriever(passages, RetrievalSettings(top_k=1))
    assert retriever.search("What does the Aero Desk sell for?") == [passages[2]]
    assert retriever.search("zebra quantum") == []  # no shared term: nothing is forced into the prompt
    messages = retriever.augment(
        [{"role": "system", "content": "You are Nova."}, {"role": "user", "content": "Is delivery free?"}]
    )
    assert messages[0]["role"] == "system" and messages[0]["content"].startswith("You are Nova.")
    assert "orders over $50" in messages[0]["content"] and messages[1]["content"] == "Is delivery free?"
    assert Retriever(passages).digest != Retriever(passages, RetrievalSettings(top_k=2)).digest


def test_contamination_flags_copies_not_paraphrases():
    training = ["How much does the Acme Aero Desk cost?\nThe Acme Aero Desk costs $499.", "Who are you?\nI am Nova."]
    items = [
        _item("How much does the Acme Aero Desk cost?", item_id="copy"),
        _item("What does the Acme Aero Desk sell for?", item_id="paraphrase"),
        _item("Who are you?", domain="identity", item_id="short-copy"),
    ]
    report = check_contamination(items, training, ContaminationSettings(ngram=5, threshold=0.5))
    flagged = {row["id"] for row in report["flagged_items"]}
    assert flagged == {"copy", "short-copy"}
    assert report["by_domain"]["d"] == {"n": 2, "flagged": 1, "mean_overlap": 0.625, "max_overlap": 1.0}
    assert summary_lines(report)[0].startswith("d: 1 of 2 test prompts")


def test_demo_test_sets_are_large_and_held_out():
    """The shipped test sets: at least 60 items per Acme domain, none a copy of a training question."""
    import csv

    support = load_test_set(ROOT / "data/acme/tests/support.jsonl")
    product = load_test_set(ROOT / "data/acme/tests/product.jsonl")
    general = load_test_set(ROOT / "data/acme/tests/general.jsonl") + load_test_set(ROOT / "data/general/qa.jsonl")
    assert len(support) >= 60 and len(product) >= 60 and len(general) >= 60
    with open(ROOT / "data/acme/faq.csv", newline="") as handle:
        training = [f"{row['question']}\n{row['answer']}" for row in csv.DictReader(handle)]
    replay = (ROOT / "data/general/replay_prompts.jsonl").read_text().splitlines()
    training += [json.loads(line)["prompt"] for line in replay if line.strip()]
    report = check_contamination(support + product, training)
    assert report["flagged"] == 0, report["flagged_items"]


def test_building_an_index_does_not_talk_on_the_terminal():
    import logging

    from openrecipe.eval.retrieval import Retriever

    Retriever(["Returns are accepted within 30 days.", "Shipping takes 5 days."])
    assert logging.getLogger("bm25s").getEffectiveLevel() >= logging.WARNING  # bm25s sets DEBUG on import
