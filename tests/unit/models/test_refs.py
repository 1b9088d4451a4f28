import json
import shutil

import pytest

from openrecipe.errors import OpenRecipeError
from openrecipe.models import default as default_module
from openrecipe.models.loading import load_model
from openrecipe.models.refs import resolve_model_ref


def test_default_resolves_to_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENRECIPE_HOME", str(tmp_path))
    ref = resolve_model_ref("default")
    assert ref.kind == "default"
    assert ref.path == tmp_path / "models" / "SmolLM2-135M-Instruct"


def test_hf_folder(tiny_model_dir):
    ref = resolve_model_ref(str(tiny_model_dir))
    assert ref.kind == "hf_folder"
    loaded = load_model(ref, dtype="float32")
    assert loaded.model.config.num_hidden_layers == 2
    assert loaded.tokenizer.chat_template


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(OpenRecipeError, match="is not a model folder .*found: notes.txt"):
        resolve_model_ref(str(tmp_path))


def test_folder_with_config_but_no_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(OpenRecipeError, match="no weights"):
        resolve_model_ref(str(tmp_path))


def test_missing_path_and_non_model_file(tmp_path):
    with pytest.raises(OpenRecipeError, match="model path not found"):
        resolve_model_ref(str(tmp_path / "nope"))
    text_file = tmp_path / "a.txt"
    text_file.write_text("x")
    with pytest.raises(OpenRecipeError, match="not a .gguf model"):
        resolve_model_ref(str(text_file))


def test_corrupt_and_truncated_gguf_get_clear_errors(tmp_path):
    from openrecipe.models.gguf_import import check_gguf

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all")
    assert resolve_model_ref(str(bad)).kind == "gguf"
    with pytest.raises(OpenRecipeError, match="not a GGUF file"):
        load_model(str(bad))
    truncated = tmp_path / "truncated.gguf"
    with open(default_module.default_gguf_path(), "rb") as handle:
        truncated.write_bytes(handle.read(200_000))
    with pytest.raises(OpenRecipeError, match="corrupt or truncated GGUF"):
        check_gguf(truncated)


def test_adapter_folder_loads_its_base(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear"))
    peft_model.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir)
    ref = resolve_model_ref(str(tmp_path / "adapter"))
    assert ref.kind == "adapter" and ref.base is not None and ref.base.kind == "hf_folder"
    loaded = load_model(ref, dtype="float32", merge_adapter=True)
    assert type(loaded.model).__name__ == "LlamaForCausalLM"


def test_offline_hub_id_fails_fast_with_clear_message(monkeypatch):
    import time

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(OpenRecipeError, match="pass a local model folder"):
        load_model("someone/never-cached-model")
    assert resolve_model_ref("someone/never-cached-model").kind == "hub"
    assert time.perf_counter() - start < 30  # no long retry loop


def test_interrupted_default_conversion_leaves_no_half_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENRECIPE_HOME", str(tmp_path))
    from openrecipe.models import gguf_import

    def crash(path, out_dir):
        (out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf_import, "convert_gguf_to_hf", crash)
    with pytest.raises(KeyboardInterrupt):
        default_module.ensure_default_model()
    models = tmp_path / "models"
    assert not (models / "SmolLM2-135M-Instruct").exists()
    assert list(models.iterdir()) == []


def test_default_model_conversion_is_cached(default_model_dir, monkeypatch):
    from openrecipe.models import gguf_import

    monkeypatch.setattr(gguf_import, "convert_gguf_to_hf", lambda *a: pytest.fail("converted twice"))
    assert default_module.ensure_default_model() == default_model_dir
    assert (default_model_dir / "chat_template.jinja").is_file() or "chat_template" in (
        default_model_dir / "tokenizer_config.json"
    ).read_text()


def test_user_files_are_not_modified(tiny_model_dir, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(tiny_model_dir, copy)
    before = {p.name: p.stat().st_mtime_ns for p in copy.iterdir()}
    load_model(str(copy), dtype="float32")
    assert {p.name: p.stat().st_mtime_ns for p in copy.iterdir()} == before
