"""Hostile GGUF files: counts that claim more than the file holds are refused before anything is allocated."""

from __future__ import annotations

import random
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from openrecipe.errors import OpenRecipeError
from openrecipe.models.gguf_header import check_gguf, read_gguf_header

UINT8, UINT32, STRING, ARRAY = 0, 4, 8, 9


def gguf_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def header(num_tensors: int, num_metadata: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, num_tensors, num_metadata)


def array_bomb() -> bytes:
    """52 bytes: one metadata array of uint8 that claims 2^40 items."""
    data = header(0, 1) + gguf_string("a") + struct.pack("<IIQ", ARRAY, UINT8, 2**40)
    return data + b"\0" * (52 - len(data))


def write(tmp_path: Path, data: bytes, name: str = "hostile.gguf") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refused_with_small_memory(path: Path, match: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(OpenRecipeError, match=match):
            check_gguf(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"refusing the file allocated {peak} bytes"


def test_a_52_byte_array_bomb_is_refused_without_allocating(tmp_path):
    data = array_bomb()
    assert len(data) == 52
    refused_with_small_memory(write(tmp_path, data), r"item count of a is 1099511627776, but only \d+ bytes are left")


def test_a_string_array_bomb_is_refused(tmp_path):
    data = header(0, 1) + gguf_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", ARRAY, STRING, 2**62)
    refused_with_small_memory(write(tmp_path, data), "item count of tokenizer.ggml.tokens")


def test_tensor_and_metadata_counts_beyond_the_file_are_refused(tmp_path):
    refused_with_small_memory(write(tmp_path, header(2**60, 0), "tensors.gguf"), "tensor count is 1152921504606846976")
    refused_with_small_memory(write(tmp_path, header(0, 2**63), "metadata.gguf"), "metadata count")


def test_a_string_longer_than_the_file_is_refused(tmp_path):
    data = header(0, 1) + gguf_string("general.name") + struct.pack("<IQ", STRING, 2**50)
    refused_with_small_memory(write(tmp_path, data), "value of general.name needs 1125899906842624 bytes")
    key_bomb = header(0, 1) + struct.pack("<Q", 2**40) + b"\0" * 16
    refused_with_small_memory(write(tmp_path, key_bomb, "key.gguf"), "a metadata key is 1099511627776 bytes long")


def test_nested_arrays_and_unknown_types_are_refused(tmp_path):
    nested = header(0, 1) + gguf_string("x") + struct.pack("<IIQ", ARRAY, ARRAY, 1) + b"\0" * 32
    refused_with_small_memory(write(tmp_path, nested), "array of arrays")
    unknown = header(0, 1) + gguf_string("x") + struct.pack("<I", 99) + b"\0" * 8
    refused_with_small_memory(write(tmp_path, unknown, "type.gguf"), "unknown value type 99")


def valid_gguf(path: Path) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_token_list(["<s>", "a", "b", "ab"])
    writer.add_chat_template("{{ messages[0]['content'] }}")
    writer.add_tensor("token_embd.weight", np.ones((4, 32), dtype=np.float16))
    writer.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_valid_file_is_read_fully(tmp_path):
    info = read_gguf_header(valid_gguf(tmp_path / "ok.gguf"))
    assert info.architecture == "llama" and info.chat_template == "{{ messages[0]['content'] }}"
    assert info.metadata["tokenizer.ggml.tokens"] == ("string", 4)
    assert info.tensors["token_embd.weight"] == (1, (32, 4))  # F16, GGUF order: row length first
    assert info.data_offset % 32 == 0


def test_tensor_data_past_the_end_of_the_file_is_refused(tmp_path):
    path = valid_gguf(tmp_path / "ok.gguf")
    data = path.read_bytes()
    refused_with_small_memory(write(tmp_path, data[:-4], "short.gguf"), "tensor output_norm.weight spans bytes")


def test_every_truncation_and_random_corruption_is_a_user_error(tmp_path):
    """No prefix or byte flip of a valid file makes the check fail with anything but a user error."""
    data = valid_gguf(tmp_path / "ok.gguf").read_bytes()
    target = tmp_path / "mutated.gguf"
    candidates = [data[:length] for length in range(0, len(data), 7)]
    rng = random.Random(0)
    for _ in range(300):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        candidates.append(bytes(mutated))
    for candidate in candidates:
        target.write_bytes(candidate)
        try:
            check_gguf(target)
        except OpenRecipeError:
            pass


def test_the_chat_command_refuses_a_hostile_gguf_with_exit_2(tmp_path):
    from typer.testing import CliRunner

    from openrecipe.cli.main import app

    path = write(tmp_path, array_bomb())
    result = CliRunner().invoke(app, ["chat", str(path), "-p", "hi"])
    assert result.exit_code == 2, result.output
    assert "corrupt or truncated GGUF" in result.output
