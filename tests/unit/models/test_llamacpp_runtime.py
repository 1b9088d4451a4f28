"""Choosing llama.cpp's CPU variant: the best runnable one, AMX only by name, clear errors for bad requests;
ggml's log lines filtered by ggml's own levels."""

import logging

import pytest

from openrecipe.errors import OpenRecipeError
from openrecipe.models.llamacpp import VARIANT_ENV, _choose, ggml_log_line

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


@pytest.fixture
def llama_logger_level():
    logger = logging.getLogger("llama-cpp-python")
    before = logger.level
    yield logger.setLevel
    logger.setLevel(before)


def test_ggml_log_lines_are_filtered_by_ggml_own_levels(capsys, llama_logger_level):
    """ggml.h: DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5. Quiet (ERROR) shows errors and hides warnings — the
    binding's own mapping did the opposite — and a continued line follows the line it continues."""
    llama_logger_level(logging.ERROR)
    ggml_log_line(3, b"n_ctx_seq (32768) > n_ctx_train (8192)\n")
    ggml_log_line(5, b"... its continuation\n")
    ggml_log_line(4, b"failed to open the model\n")
    ggml_log_line(5, b"... because of this\n")
    ggml_log_line(2, b"loaded meta data\n")
    assert capsys.readouterr().err == "failed to open the model\n... because of this\n"
    llama_logger_level(logging.DEBUG)
    ggml_log_line(1, b"debug line\n")
    assert capsys.readouterr().err == "debug line\n"
