from openrecipe.data.clean import CleanConfig, clean_records, normalize, scrub_pii
from openrecipe.data.records import Record


def qa(q, a, where="f:1"):
    return Record(messages=[{"role": "user", "content": q}, {"role": "assistant", "content": a}], where=where)


def test_normalize():
    assert normalize("Hello,   WORLD!") == normalize("hello world") == "hello world"


def test_exact_dedup_after_normalization_keeps_first_and_reports():
    records = [
        qa("What is Acme?", "A company.", "f:1"),
        qa("what is acme", "a company", "f:2"),
        qa("Other?", "Yes.", "f:3"),
    ]
    kept, report = clean_records(records, CleanConfig(near_dedup=False))
    assert [r.where for r in kept] == ["f:1", "f:3"]
    assert report.removed == {"exact_duplicate": 1}
    assert report.examples["exact_duplicate"][0]["detail"] == "same as f:1"
    assert report.rows_in == 3 and report.rows_out == 2


def test_near_dedup_catches_small_edits_but_not_different_text():
    base = "Our return policy lets you send back any unused product within thirty days for a full refund."
    records = [
        qa("Returns?", base, "f:1"),
        qa("Returns?", base.replace("full refund", "full refund!!"), "f:2"),
        qa("Returns?", base.replace("product", "products"), "f:3"),
        qa("Shipping?", "Orders ship in two business days from our Denver warehouse.", "f:4"),
    ]
    kept, report = clean_records(records, CleanConfig(dedup=False))
    assert [r.where for r in kept] == ["f:1", "f:4"]
    assert report.removed["near_duplicate"] == 2


def test_length_filters():
    records = [qa("q", "a"), qa("question", "a much longer answer " * 20)]
    kept, report = clean_records(records, CleanConfig(min_chars=5, max_chars=100))
    assert kept == [] and report.removed == {"too_short": 1, "too_long": 1}


def test_pii_scrubbed_counted_and_not_leaked_in_examples():
    records = [qa("Contact?", "Mail jane.doe@example.com or call (555) 123-4567; card 4111 1111 1111 1111.")]
    kept, report = clean_records(records, CleanConfig())
    answer = kept[0].messages[1]["content"]
    assert answer == "Mail <EMAIL> or call <PHONE>; card <CARD_NUMBER>."
    assert report.modified == {"pii_email": 1, "pii_phone": 1, "pii_card_number": 1}
    assert "jane.doe" not in str(report.to_json())


def test_pii_keep_list_and_false_positives():
    text, counts = scrub_pii(
        "support@acme.example, years 2000-2015, order 1234567890123, v3.10.2", {"support@acme.example"}
    )
    assert text == "support@acme.example, years 2000-2015, order 1234567890123, v3.10.2"
    assert not counts
    text, counts = scrub_pii("身份证 11010519491231002X 手机 13812345678", set())
    assert text == "身份证 <ID_NUMBER> 手机 <PHONE>"
