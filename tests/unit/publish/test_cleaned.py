"""A bundle's recipe trains from the cleaned files under the labels `stage:<clean>` gave them."""

from openrecipe.publish.cleaned import clean_source_fields, train_from_cleaned


def recipe() -> dict:
    return {
        "name": "r",
        "stages": [
            {"id": "tests", "kind": "generate", "prompts": ["stage:data is just text here"]},
            {"id": "data", "kind": "clean", "sources": [{"path": "faq.csv"}, {"path": "more.jsonl"}]},
            {
                "id": "sft",
                "kind": "sft",
                "data": [
                    {"path": "stage:data", "weight": 0.7, "name": None, "source": None},
                    {"path": "stage:data/data", "weight": 0.3, "source": "identity"},
                    {"path": "stage:tests", "weight": 0.1},
                ],
            },
            {"id": "eval", "kind": "eval", "retrieval": {"sources": [{"path": "stage:data", "name": "docs"}]}},
        ],
    }


def test_clean_stages_go_and_their_data_is_read_from_the_published_file():
    changed = recipe()
    left_out = {("stages", 1, "sources", n, field) for n in (0, 1) for field in ("path", "review")}
    assert clean_source_fields(changed) == left_out  # the raw files, and review patches quoting them
    assert train_from_cleaned(changed) == ["data"]
    assert [stage["id"] for stage in changed["stages"]] == ["tests", "sft", "eval"]
    first, identity, generated = changed["stages"][1]["data"]
    assert first == {"path": "data/cleaned-data.jsonl", "weight": 0.7, "name": "data", "source": None}
    assert identity == {"path": "data/cleaned-data.jsonl", "weight": 0.3, "source": "identity"}  # its label
    assert generated == {"path": "stage:tests", "weight": 0.1}  # other stages' data is re-generated
    assert changed["stages"][2]["retrieval"]["sources"] == [{"path": "data/cleaned-data.jsonl", "name": "docs"}]
    assert changed["stages"][0]["prompts"] == ["stage:data is just text here"]
