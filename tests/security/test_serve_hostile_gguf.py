"""The llamacpp engine checks a GGUF's header before llama.cpp opens it: a hostile or truncated file is a
user error (exit 2 from the CLI), not a crash, and llama.cpp is never loaded for it."""

from __future__ import annotations

import struct

import pytest

from openrecipe.errors import OpenRecipeError
from openrecipe.serve.engines import ENGINES


def _gguf_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


@pytest.mark.parametrize(
    "data",
    [
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _gguf_string("a") + struct.pack("<IIQ", 9, 0, 2**40),  # array bomb
        b"GGUF" + struct.pack("<IQQ", 3, 2**50, 0),  # tensor count past the file
        b"GGUF" + struct.pack("<I", 3),  # truncated
        b"NOPE" + b"\0" * 60,  # not a GGUF
    ],
    ids=["array-bomb", "tensor-count", "truncated", "not-gguf"],
)
def test_hostile_gguf_is_refused_before_llama_cpp_loads(tmp_path, monkeypatch, data):
    import openrecipe.models.llamacpp as llamacpp

    path = tmp_path / "model.gguf"
    path.write_bytes(data)
    monkeypatch.setattr(llamacpp, "load_llama_cpp", lambda: pytest.fail("llama.cpp was loaded for a hostile file"))
    with pytest.raises(OpenRecipeError):
        ENGINES.get("llamacpp")(str(path), model_id="m")


def test_cli_reports_a_truncated_gguf_as_a_user_error(tmp_path):
    from typer.testing import CliRunner

    from openrecipe.cli.main import app

    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<I", 3))
    result = CliRunner().invoke(app, ["serve", str(path), "--engine", "llamacpp"])
    assert result.exit_code == 2, result.output
