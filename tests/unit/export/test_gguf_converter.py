"""Getting llama.cpp's converter out of the llama-cpp-python sdist, and what is added around it."""

from __future__ import annotations

import io
import json
import sys
import tarfile

import pytest

from openrecipe.errors import OpenRecipeError
from openrecipe.export import converter
from openrecipe.export.hf_to_gguf import LLAMA3_SPLIT, QWEN2_SPLIT, pre_tokenizer_name

ROOT = "llama_cpp_python-9.9.9/vendor/llama.cpp/"


def fake_sdist(path, extra: dict[str, bytes] | None = None):
    files = {
        ROOT + "convert_hf_to_gguf.py": b"print('converter')\n",
        ROOT + "conversion/__init__.py": b"",
        ROOT + "gguf-py/gguf/__init__.py": b"",
        ROOT + "LICENSE": b"MIT\n",
        ROOT + "ggml/src/ggml.c": b"int main;\n",  # not part of the converter
        "llama_cpp_python-9.9.9/pyproject.toml": b"",
        **(extra or {}),
    }
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_install_unpacks_only_the_converter_and_is_found(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    monkeypatch.delenv(converter.ENV_OVERRIDE, raising=False)
    monkeypatch.setattr(converter, "linked_version", lambda: "9.9.9")
    with pytest.raises(OpenRecipeError, match=r"converter \(llama-cpp-python 9.9.9\) is not installed"):
        converter.converter_dir()
    folder = converter.install_converter(sdist=fake_sdist(tmp_path / "s.tar.gz"))
    assert folder == tmp_path / "venv" / "share" / "openrecipe" / "llama.cpp-convert-9.9.9"
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == [
        "LICENSE",
        "VERSION",
        "conversion/__init__.py",
        "convert_hf_to_gguf.py",
        "gguf-py/gguf/__init__.py",
    ]
    assert converter.converter_dir() == folder
    assert converter.install_converter(sdist=tmp_path / "missing.tar.gz") == folder  # already there: no work


def test_an_sdist_without_the_converter_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    sdist = tmp_path / "other.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        info = tarfile.TarInfo("other-1.0/setup.py")
        archive.addfile(info, io.BytesIO(b""))
    with pytest.raises(OpenRecipeError, match="holds no vendor/llama.cpp/convert_hf_to_gguf.py"):
        converter.install_converter(sdist=sdist, version="1.0")
    assert not (tmp_path / "venv" / "share" / "openrecipe" / "llama.cpp-convert-1.0").exists()


def test_the_override_must_point_at_a_converter(tmp_path, monkeypatch):
    monkeypatch.setenv(converter.ENV_OVERRIDE, str(tmp_path))
    with pytest.raises(OpenRecipeError, match="has no convert_hf_to_gguf.py"):
        converter.converter_dir()


def test_command_line_reports_a_bad_sdist_as_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz"):
        pass
    assert converter.main(["--sdist", str(bad), "--version", "0.0.1"]) == 2
    assert "holds no vendor/llama.cpp" in capsys.readouterr().err


def tokenizer_json(folder, pre_tokenizer):
    folder.mkdir(exist_ok=True)
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE"}, "pre_tokenizer": pre_tokenizer}))
    return folder


def split_then_bytes(pattern):
    return {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ],
    }


def test_pre_tokenizers_are_named_only_from_rules_llama_cpp_implements(tmp_path):
    assert pre_tokenizer_name(tokenizer_json(tmp_path / "a", split_then_bytes(LLAMA3_SPLIT))) == "llama-bpe"
    assert pre_tokenizer_name(tokenizer_json(tmp_path / "b", split_then_bytes(QWEN2_SPLIT))) == "qwen2"
    gpt2 = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    assert pre_tokenizer_name(tokenizer_json(tmp_path / "c", gpt2)) == "gpt-2"
    assert pre_tokenizer_name(tokenizer_json(tmp_path / "d", split_then_bytes(r"\p{L}+|\s+"))) is None
    assert pre_tokenizer_name(tmp_path / "missing") is None


def test_an_sdist_member_that_leaves_the_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    sdist = fake_sdist(tmp_path / "evil.tar.gz", {ROOT + "conversion/../../../../../escaped.py": b"x"})
    with pytest.raises(OpenRecipeError, match="unsafe member"):
        converter.install_converter(sdist=sdist, version="6.6.6")
    assert not list(tmp_path.rglob("escaped.py"))


def test_a_sentencepiece_model_rebuilt_from_tokenizer_json_tokenizes_like_the_original(tmp_path):
    import sentencepiece as spm
    from transformers import AutoTokenizer

    from openrecipe.export.hf_to_gguf import converter_view, sentencepiece_from_tokenizer_json

    lines = ["Hello world, 你好世界 🚀 def f(x): return 42", "The quick brown fox. 北京 3.14"] * 30
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(tmp_path / "sp"),
        vocab_size=300,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    source = tmp_path / "source"
    source.mkdir()
    (source / "tokenizer.model").write_bytes((tmp_path / "sp.model").read_bytes())
    (source / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer", "legacy": True}))
    saved = tmp_path / "saved"
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(saved))
    assert not (saved / "tokenizer.model").exists()  # what transformers 5 leaves for the converter
    rebuilt = spm.SentencePieceProcessor(model_proto=sentencepiece_from_tokenizer_json(saved))
    original = spm.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    text = "Hello 你好 🦙 brown fox Ω 1234"
    assert rebuilt.encode(text) == original.encode(text) and rebuilt.vocab_size() == original.vocab_size()
    (tmp_path / "view").mkdir()
    view = converter_view(saved, tmp_path / "view")
    assert view.name == "saved" and (view / "tokenizer.model").is_file() and (view / "tokenizer.json").is_symlink()
    config = json.loads((view / "tokenizer_config.json").read_text())
    reloaded = AutoTokenizer.from_pretrained(str(saved))
    assert config["add_bos_token"] == (reloaded("a")["input_ids"][0] == reloaded.bos_token_id)
    assert config["added_tokens_decoder"]["1"]["content"] == "<s>"
