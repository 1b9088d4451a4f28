import json
from pathlib import Path

import pytest

from openrecipe.errors import OpenRecipeError
from openrecipe.stages.base import StageContext, StageResult
from openrecipe.stages.training_common import DataRef, read_ref


def _context(tmp_path: Path, data: Path) -> StageContext:
    return StageContext(
        run_dir=tmp_path,
        stage_dir=tmp_path / "sft",
        seed=0,
        base_model="default",
        system_prompt=None,
        identity=None,
        results={"data": StageResult(artifacts={"data": str(data)})},
    )


def _prepared(tmp_path: Path) -> Path:
    rows = [("faq", "Returns?", "30 days."), ("identity", "Who are you?", "Nova."), ("faq", "Hours?", "9 to 5.")]
    path = tmp_path / "data.jsonl"
    path.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "source": s})
            + "\n"
            for s, q, a in rows
        )
    )
    return path


def test_source_filter_picks_rows_of_one_source(tmp_path):
    context = _context(tmp_path, _prepared(tmp_path))
    faq = read_ref(context, DataRef(path="stage:data", source="faq"))
    assert [r.messages[0]["content"] for r in faq] == ["Returns?", "Hours?"]
    assert DataRef(path="stage:data", source="identity").label() == "identity"
    assert len(read_ref(context, DataRef(path="stage:data"))) == 3


def test_unknown_source_names_the_ones_there(tmp_path):
    context = _context(tmp_path, _prepared(tmp_path))
    with pytest.raises(OpenRecipeError, match="no rows of stage:data come from source 'idenity'.*faq, identity"):
        read_ref(context, DataRef(path="stage:data", source="idenity"))
