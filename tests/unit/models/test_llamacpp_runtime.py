"""Choosing llama.cpp's CPU variant: the best runnable one, AMX only by name, clear errors for bad requests."""

import pytest

from openrecipe.errors import OpenRecipeError
from openrecipe.models.llamacpp import VARIANT_ENV, _choose

SCORES = {"x64": 1, "sse42": 5, "haswell": 129, "skylakex": 0, "sapphirerapids": 0}


def test_picks_the_highest_scoring_runnable_variant(monkeypatch):
    monkeypatch.delenv(VARIANT_ENV, raising=False)
    assert _choose(SCORES) == "haswell"


def test_amx_variant_is_skipped_unless_named(monkeypatch):
    monkeypatch.delenv(VARIANT_ENV, raising=False)
    scores = {**SCORES, "skylakex": 300, "sapphirerapids": 900}
    assert _choose(scores) == "skylakex"
    monkeypatch.setenv(VARIANT_ENV, "sapphirerapids")
    assert _choose(scores) == "sapphirerapids"


def test_a_variant_can_be_forced_down_to_the_baseline(monkeypatch):
    monkeypatch.setenv(VARIANT_ENV, "x64")
    assert _choose(SCORES) == "x64"


@pytest.mark.parametrize(
    ("requested", "message"),
    [("avx9000", "is not a built llama.cpp CPU variant"), ("skylakex", "needs CPU instructions this machine lacks")],
)
def test_bad_requests_name_the_fix(monkeypatch, requested, message):
    monkeypatch.setenv(VARIANT_ENV, requested)
    with pytest.raises(OpenRecipeError, match=message) as raised:
        _choose(SCORES)
    assert "haswell" in raised.value.format()


def test_nothing_runnable_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(VARIANT_ENV, raising=False)
    with pytest.raises(OpenRecipeError, match="no llama.cpp CPU variant runs on this CPU"):
        _choose({"skylakex": 0})
