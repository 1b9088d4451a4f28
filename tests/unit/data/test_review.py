"""The review patch: how the workbench records hand edits, and what applying it does to a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openrecipe.data.clean import CleanConfig, clean_records
from openrecipe.data.config import DataSource
from openrecipe.data.load import load_source
from openrecipe.data.review import Review, patch_path, read_patch, read_rows, stale_patch_path
from openrecipe.data.reviewed import apply_reviews, write_reviewed
from openrecipe.errors import OpenRecipeError

FAQ = (
    "question,answer\n"
    "What are your hours?,9 to 5.\n"
    "How do I reset my password?,\n"
    "Mail?,Write to bob@example.com today\n"
    '"Where,\nexactly?",Berlin\n'
    "Refunds?,Within 30 days\n"
)
EMAIL_PROPOSAL = {
    "kind": "pii",
    "row": 2,
    "line": 4,
    "field": "answer",
    "old": "Write to bob@example.com today",
    "new": "Write to <EMAIL> today",
}


@pytest.fixture
def faq(tmp_path: Path) -> Path:
    path = tmp_path / "faq.csv"
    path.write_text(FAQ)
    return path


def reviewed_records(path: Path, tmp_path: Path, clean: CleanConfig | None = None):
    """The records the clean stage gets from the file with its patch applied, and what applying counted."""
    source = DataSource(path=str(path))
    applied = apply_reviews([source], [patch_path(path)], clean or CleanConfig(), tmp_path / "reviewed")
    records = load_source(applied.sources[0]).records
    return records, applied


def test_an_edit_lands_in_the_reviewed_copy_on_its_original_line(faq, tmp_path):
    review = Review.load(faq)
    review.set_cells(1, 3, {"answer": "Use the reset link."}, {"answer": ""})
    records, applied = reviewed_records(faq, tmp_path)
    assert [r.messages[-1]["content"] for r in records][:2] == ["9 to 5.", "Use the reset link."]
    assert [r.where.rsplit(":", 1)[1] for r in records] == ["2", "3", "4", "6", "7"]  # the original's lines
    assert applied.to_json()["faq.csv"]["edited_rows"] == 1 and applied.to_json()["faq.csv"]["edited_cells"] == 1
    assert faq.read_text() == FAQ  # the original is never rewritten


def test_an_edit_back_to_the_original_value_leaves_no_change():
    review = Review(Path("unused.csv"))
    review.save = lambda: None
    review.set_cells(0, 2, {"answer": "new"}, {"answer": "old"})
    review.set_cells(0, 2, {"answer": "old"}, {"answer": "old"})
    assert review.rows == {}


def test_a_flagged_row_is_dropped_and_the_rows_after_it_keep_their_lines(faq, tmp_path):
    review = Review.load(faq)
    review.set_cells(1, 3, {"answer": "Use the reset link."}, {"answer": ""})
    review.set_flag(0, 2, True)
    records, applied = reviewed_records(faq, tmp_path)
    assert records[0].messages[0]["content"] == "How do I reset my password?"
    assert [r.where.rsplit(":", 1)[1] for r in records] == ["3", "4", "6", "7"]
    assert applied.to_json()["faq.csv"]["flagged_removed"] == 1
    review.set_flag(0, 2, False)
    assert len(reviewed_records(faq, tmp_path)[0]) == 5


def test_an_accepted_pii_proposal_replaces_the_cell(faq, tmp_path):
    review = Review.load(faq)
    review.set_cells(1, 3, {"answer": "Use the reset link."}, {"answer": ""})
    review.decide("pii:2:answer", EMAIL_PROPOSAL, "accepted")
    records, applied = reviewed_records(faq, tmp_path, CleanConfig(pii=False))
    assert records[2].messages[-1]["content"] == "Write to <EMAIL> today"
    assert applied.to_json()["faq.csv"]["pii_accepted"] == 1


def test_a_rejected_pii_proposal_keeps_the_text_through_the_cleaner(faq, tmp_path):
    review = Review.load(faq)
    review.set_cells(1, 3, {"answer": "Use the reset link."}, {"answer": ""})
    review.decide("pii:2:answer", EMAIL_PROPOSAL, "rejected")
    records, applied = reviewed_records(faq, tmp_path)
    assert applied.clean.pii_keep_organization_contacts == ["bob@example.com"]
    kept, _ = clean_records(records, applied.clean)
    assert kept[2].messages[-1]["content"] == "Write to bob@example.com today"
    assert applied.to_json()["faq.csv"]["pii_rejected"] == 1
    scrubbed, _ = clean_records(records, CleanConfig())  # without the decision the cleaner replaces it
    assert scrubbed[2].messages[-1]["content"] == "Write to <EMAIL> today"


def test_a_proposal_for_a_cell_edited_afterwards_gives_way_to_the_edit(faq, tmp_path):
    review = Review.load(faq)
    review.decide("pii:2:answer", EMAIL_PROPOSAL, "accepted")
    review.set_cells(1, 3, {"answer": "Use the reset link."}, {"answer": ""})
    review.set_cells(2, 4, {"answer": "Write to us"}, {"answer": EMAIL_PROPOSAL["old"]})
    records, applied = reviewed_records(faq, tmp_path, CleanConfig(pii=False))
    assert records[2].messages[-1]["content"] == "Write to us"
    assert applied.to_json()["faq.csv"]["pii_stale"] == 1 and applied.to_json()["faq.csv"]["pii_accepted"] == 0


def test_an_accepted_duplicate_is_dropped(faq, tmp_path):
    review = Review.load(faq)
    review.set_cells(1, 3, {"answer": "Use the reset link."}, {"answer": ""})
    review.decide("dup:4", {"kind": "near_duplicate", "row": 4, "line": 7, "detail": "x"}, "accepted")
    records, applied = reviewed_records(faq, tmp_path)
    assert [r.messages[0]["content"] for r in records][-1] == "Where,\nexactly?"
    assert applied.to_json()["faq.csv"]["duplicates_removed"] == 1


def test_a_patch_for_another_version_of_the_file_stops_the_stage_naming_both_and_the_fix(faq, tmp_path):
    review = Review.load(faq)
    review.set_cells(1, 3, {"answer": "Use the reset link."}, {"answer": ""})
    recorded = read_patch(patch_path(faq)).sha256
    faq.write_text(FAQ + "New?,Row\n")
    with pytest.raises(OpenRecipeError) as caught:
        reviewed_records(faq, tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{patch_path(faq)}: the review patch was made for another version of faq.csv")
    assert recorded[:12] in message and "openrecipe ui" in message and "delete the patch" in message
    # The workbench sets the stale patch aside and starts afresh.
    assert Review.load(faq).rows == {}
    assert stale_patch_path(faq, recorded).is_file() and not patch_path(faq).exists()


def test_a_broken_patch_is_an_error_naming_the_file_and_field(faq, tmp_path):
    patch_path(faq).write_text(json.dumps({"file": "faq.csv", "sha256": "x", "rows": {"1": {"lin": 3}}}))
    with pytest.raises(OpenRecipeError) as caught:
        read_patch(patch_path(faq))
    assert str(patch_path(faq)) in str(caught.value) and "rows.1" in str(caught.value)


def test_jsonl_keeps_untouched_lines_verbatim_and_edits_keep_the_other_fields(tmp_path):
    path = tmp_path / "chat.jsonl"
    lines = [
        '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], "id": 7}',
        "",
        '{"messages": [{"role": "user", "content": "Hours?"}, {"role": "assistant", "content": "?"}], "id": 8}',
        '{"messages": [{"role": "user", "content": "Broken"}',
    ]
    path.write_text("\n".join(lines) + "\n")
    columns, rows, numbers = read_rows(path)
    assert numbers == [1, 3, 4] and columns == ["messages", "id", "_raw"]
    review = Review.load(path)
    fixed = [{"role": "user", "content": "Hours?"}, {"role": "assistant", "content": "9 to 5"}]
    review.set_cells(1, 3, {"messages": json.dumps(fixed)}, rows[1])
    review.set_cells(2, 4, {"_raw": '{"text": "fixed by hand"}'}, rows[2])
    out = tmp_path / "out.jsonl"
    write_reviewed(path, read_patch(patch_path(path)), out)
    written = out.read_text().split("\n")
    assert written[0] == lines[0] and written[1] == ""
    assert json.loads(written[2]) == {"messages": fixed, "id": 8}
    assert written[3] == '{"text": "fixed by hand"}'


def test_xlsx_is_read_as_the_table_reader_reads_it_and_reviewed_as_csv(tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["question", "answer"])
    sheet.append(["How many?", 5])
    sheet.append([None, None])
    sheet.append(["Hours?", None])
    path = tmp_path / "faq.xlsx"
    book.save(path)
    columns, rows, numbers = read_rows(path)
    assert columns == ["question", "answer"] and numbers == [2, 4]
    assert rows[0] == {"question": "How many?", "answer": "5"}
    Review.load(path).set_cells(1, 4, {"answer": "9 to 5"}, {"answer": ""})
    records, _ = reviewed_records(path, tmp_path)
    assert [(r.where.rsplit(":", 1)[1], r.messages[-1]["content"]) for r in records] == [("2", "5"), ("4", "9 to 5")]


def test_a_rejected_duplicate_proposal_keeps_the_row_through_the_cleaners_dedup(tmp_path):
    from openrecipe.data.reviewed import prepare_reviewed_data

    path = tmp_path / "hours.csv"
    path.write_text("question,answer\nHours?,Nine to five every day\nHours??,Nine to five every day\nWhere?,Here\n")
    source = DataSource(path=str(path))

    def answers(out: str) -> list[str]:
        summary = prepare_reviewed_data([source], [patch_path(path)], tmp_path / out, clean=CleanConfig())
        rows = (tmp_path / out / "data.jsonl").read_text().splitlines()
        return [json.loads(row)["messages"][0]["content"] for row in rows], summary

    Review(path).save()  # an empty patch: the cleaner decides alone
    kept, summary = answers("as-cleaned")
    assert kept == ["Hours?", "Where?"] and summary["clean"]["removed"] == {"exact_duplicate": 1}
    duplicate = {"kind": "near_duplicate", "row": 1, "line": 3, "detail": "exact_duplicate: line 2"}
    Review.load(path).decide("dup:1", duplicate, "rejected")
    kept, summary = answers("reviewed")
    assert kept == ["Hours?", "Hours??", "Where?"] and summary["review"]["hours.csv"]["duplicates_rejected"] == 1
