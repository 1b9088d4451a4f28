"""`publish` of a ladder folder that did not finish is refused, naming what is missing and how to fix it."""

import json

import pytest

from openrecipe.errors import OpenRecipeError
from openrecipe.publish.bundle import publish


def test_an_unfinished_ladder_is_refused(tmp_path):
    ladder = tmp_path / "ladder"
    ladder.mkdir()
    (ladder / "ladder.json").write_text(json.dumps({"headline": "x"}))
    (ladder / "prediction.json").write_text("{}")
    with pytest.raises(OpenRecipeError) as caught:
        publish(ladder, tmp_path / "bundle")
    message = str(caught.value)
    assert "ladder.md" in message and "recipe.resolved.yaml" in message and "openrecipe ladder" in message
    assert not (tmp_path / "bundle").exists()
