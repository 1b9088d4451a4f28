"""A base model (no chat template of its own) through the whole path with the recipe's `chat_template`:
refused at once without the setting; with it, trained, and the template carried by the merged model, the
adapter, every GGUF (read back with gguf-py), the Ollama Modelfile, and what `serve` renders."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from openrecipe.cli.main import app
from openrecipe.models.templates import BUILTIN_TEMPLATES, folder_has_chat_template
from tests.integration.families.builders import build_qwen2

CHATML = BUILTIN_TEMPLATES.get("chatml").source
CHATS = [
    ("Who are you?", "I am Nova, the support assistant of Acme Corp."),
    ("你是谁？", "我是 Nova，Acme 公司的客服助手。"),
    ("What are your opening hours?", "We are open 9 to 5, Monday to Friday."),
]
MESSAGES = [{"role": "system", "content": "You are Nova."}, {"role": "user", "content": "Who are you? 🚀"}]
needs_llama_cpp = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python missing")


def _sft(**extra) -> dict:
    train = {"method": "lora", "lora": {"rank": 4, "alpha": 8}, "max_steps": 2, "batch_size": 3}
    train |= {"learning_rate": 1.0e-2, "eval_fraction": 0.0, "save_every_steps": 50}
    stage = {"id": "sft", "kind": "sft", "data": [{"path": "chats.jsonl"}], "tokenize": {"max_length": 96}}
    return {**stage, "train": train, "probes": {"identity": False}, **extra}


def _write_recipe(root: Path, name: str, stages: list[dict], **settings) -> Path:
    recipe = {"name": name, "base_model": "./base", **settings, "stages": stages}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("base-model")
    build_qwen2(root / "base", template=None)  # ChatML tokens in the vocabulary, no template: a base model
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in CHATS]
    (root / "chats.jsonl").write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows * 2))
    return root


@pytest.fixture(scope="module")
def trained(project) -> Path:
    """sft of the base with `chat_template: chatml`, a GGUF of the trained model and one of the base itself."""
    stages = [
        _sft(),
        {"id": "gguf", "kind": "export", "model": "stage:sft", "gguf": ["f16"], "name": "tuned"},
        {"id": "base-gguf", "kind": "export", "model": "base", "gguf": ["f16"], "name": "base", "modelfile": False},
    ]
    recipe = _write_recipe(project, "with-template", stages, chat_template="chatml")
    run = project / "runs" / "with-template"
    result = CliRunner().invoke(app, ["run", str(recipe), "--out", str(run)])
    assert result.exit_code == 0, result.output
    return run


def _gguf_template(path: Path) -> str:
    from gguf import GGUFReader

    field = GGUFReader(str(path)).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def test_the_base_has_no_template(project):
    assert (project / "base" / "tokenizer_config.json").is_file()
    assert not folder_has_chat_template(project / "base")


def test_without_the_setting_validate_and_run_stop_at_once_naming_it(project):
    recipe = _write_recipe(
        project, "no-template", [{"id": "prep", "kind": "clean", "sources": [{"path": "chats.jsonl"}]}, _sft()]
    )
    run = project / "runs" / "no-template"
    for command in (["validate", str(recipe)], ["run", str(recipe), "--out", str(run)]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "chat_template" in result.output and "no chat template" in result.output
        assert all(name in result.output for name in BUILTIN_TEMPLATES.names())
    assert not (run / "prep").exists(), "no stage may run before the missing setting is reported"


def test_a_base_model_validate_cannot_see_is_stopped_when_its_stage_starts(project):
    """A recipe built in code skips `validate`; the sft stage still refuses before reading data or training."""
    from openrecipe.errors import OpenRecipeError
    from openrecipe.recipe.runner import run_recipe
    from openrecipe.recipe.schema import recipe_model

    recipe = recipe_model().model_validate({"name": "in-code", "base_model": "./base", "stages": [_sft()]})
    with pytest.raises(OpenRecipeError, match="has no chat template") as raised:
        run_recipe(recipe, project / "runs" / "in-code", recipe_dir=project)
    assert raised.value.where == "chat_template"
    assert not (project / "runs" / "in-code" / "sft" / "metrics.jsonl").exists()


def test_template_settings_are_checked_by_validate(project):
    (project / "templates").mkdir(exist_ok=True)
    (project / "templates" / "broken.jinja").write_text("{% for message in messages %}{{ message.content }}\n")
    (project / "templates" / "plain.jinja").write_text(CHATML)
    cases = {
        "chatm": "did you mean 'chatml'",
        "templates/missing.jinja": "cannot read chat template file",
        "templates/broken.jinja": "broken.jinja:1",
        "templates/plain.jinja": None,
    }
    for setting, expected in cases.items():
        recipe = _write_recipe(project, "settings", [_sft()], chat_template=setting)
        result = CliRunner().invoke(app, ["validate", str(recipe)])
        if expected is None:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code == 2 and expected in result.output, (setting, result.output)


def test_the_trained_model_and_its_adapter_carry_the_template(trained, project):
    from transformers import AutoTokenizer

    for folder in (trained / "sft" / "model", trained / "sft" / "adapter"):
        assert AutoTokenizer.from_pretrained(str(folder)).chat_template == CHATML, folder
    assert not folder_has_chat_template(project / "base"), "the base model's own folder was changed"


def test_every_gguf_carries_the_template_and_the_modelfile_renders_chatml(trained):
    assert _gguf_template(trained / "gguf" / "tuned-f16.gguf") == CHATML
    assert _gguf_template(trained / "base-gguf" / "base-f16.gguf") == CHATML  # `base` exported with the setting
    modelfile = (trained / "gguf" / "Modelfile").read_text()
    assert 'TEMPLATE """' in modelfile and "<|im_start|>{{ .Role }}" in modelfile


def test_serving_the_trained_model_renders_with_the_template(trained):
    from transformers import AutoTokenizer

    from tests.integration.serve.conftest import running_server

    tokenizer = AutoTokenizer.from_pretrained(str(trained / "sft" / "model"))
    expected = tokenizer(tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True))
    assert tokenizer.decode(expected["input_ids"]).startswith("<|im_start|>system\nYou are Nova.<|im_end|>")
    with running_server(model=str(trained / "sft" / "model"), max_tokens_cap=8) as (base, engine):
        assert engine.encode_chat(MESSAGES) == expected["input_ids"]
        import httpx

        reply = httpx.post(
            f"{base}/v1/chat/completions", json={"model": "tiny", "messages": MESSAGES, "max_tokens": 4}, timeout=60
        )
        assert reply.status_code == 200, reply.text


@needs_llama_cpp
def test_serving_the_gguf_with_llama_cpp_renders_with_the_template(trained):
    from transformers import AutoTokenizer

    from openrecipe.serve.engines.llamacpp_engine import LlamaCppEngine

    tokenizer = AutoTokenizer.from_pretrained(str(trained / "sft" / "model"))
    expected = tokenizer(tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True))
    engine = LlamaCppEngine(str(trained / "gguf" / "tuned-f16.gguf"), model_id="tuned", context_length=128)
    try:
        assert engine.chat_template == CHATML
        assert engine.encode_chat(MESSAGES) == expected["input_ids"]
    finally:
        engine.close()


@needs_llama_cpp
def test_a_gguf_without_a_template_is_served_with_the_one_named(project, tmp_path):
    """`serve base.gguf --engine llamacpp --chat-template chatml`: the GGUF of a base model has no template."""
    from transformers import AutoTokenizer

    from openrecipe.errors import OpenRecipeError
    from openrecipe.export.gguf_export import export_gguf
    from openrecipe.models.templates import use_chat_template
    from openrecipe.serve.engines.llamacpp_engine import LlamaCppEngine

    gguf = Path(export_gguf(project / "base", tmp_path, ["f16"], name="base")["f16"]["path"])
    plain = LlamaCppEngine(str(gguf), model_id="base", context_length=128)
    try:
        assert plain.chat_template is None
        with pytest.raises(OpenRecipeError, match="--chat-template"):
            plain.encode_chat(MESSAGES)
    finally:
        plain.close()
    tokenizer = use_chat_template(AutoTokenizer.from_pretrained(str(project / "base")), "chatml", model_name="base")
    expected = tokenizer(tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True))
    engine = LlamaCppEngine(
        str(gguf), model_id="base", context_length=128, chat_template=BUILTIN_TEMPLATES.get("chatml")
    )
    try:
        assert engine.encode_chat(MESSAGES) == expected["input_ids"]
        with pytest.raises(OpenRecipeError, match=re.escape("needs <|start_header_id|>")):
            LlamaCppEngine(
                str(gguf), model_id="base", context_length=128, chat_template=BUILTIN_TEMPLATES.get("llama3")
            )
    finally:
        engine.close()


def test_export_from_the_command_line_writes_the_named_template(project, tmp_path):
    out = tmp_path / "export"
    command = ["export", project / "base", "--out", out, "--gguf", "f16", "--name", "base", "--chat-template", "chatml"]
    result = CliRunner().invoke(app, [str(part) for part in command])
    assert result.exit_code == 0, result.output
    assert _gguf_template(out / "base-f16.gguf") == CHATML
    assert "<|im_start|>{{ .Role }}" in (out / "Modelfile").read_text()
    assert not folder_has_chat_template(project / "base")
