"""`--chat-template NAME|FILE` on the commands that render chats (`chat`, `generate`, `serve`, `data inspect`,
`eval`), on a tiny base model built here whose vocabulary has the ChatML tokens but no template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.integration.families.builders import build_qwen2
from typer.testing import CliRunner

from openrecipe.cli.main import app
from openrecipe.models.templates import BUILTIN_TEMPLATES

CUSTOM = (
    "{% for message in messages %}{{ '### ' + message['role'] + ': ' + message['content'] + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '### assistant:' }}{% endif %}"
)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return build_qwen2(tmp_path_factory.mktemp("cli-base") / "base", template=None)


@pytest.fixture
def custom(tmp_path) -> Path:
    path = tmp_path / "custom.jinja"
    path.write_text(CUSTOM)
    return path


@pytest.fixture
def rendered(monkeypatch) -> list[str]:
    """Every prompt `chat` and `generate` render, as the model sees it."""
    from openrecipe.models import generation

    seen: list[str] = []
    original = generation.render_chat

    def recording(tokenizer, messages, **options):
        seen.append(original(tokenizer, messages, **options))
        return seen[-1]

    monkeypatch.setattr(generation, "render_chat", recording)
    return seen


def _invoke(*args: str):
    return CliRunner().invoke(app, [str(arg) for arg in args])


def test_data_inspect_needs_a_template_for_a_base_model_and_takes_one(base, custom, tmp_path):
    data = tmp_path / "chats.jsonl"
    row = {"messages": [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "Nova."}]}
    data.write_text(json.dumps(row) + "\n")
    result = _invoke("data", "inspect", data, "--model", base)
    assert result.exit_code == 2 and "no chat template" in result.output and "--chat-template" in result.output
    result = _invoke("data", "inspect", data, "--model", base, "--chat-template", "chatml")
    assert result.exit_code == 0, result.output
    assert "<|im_start|>assistant" in result.output
    result = _invoke("data", "inspect", data, "--model", base, "--chat-template", custom)
    assert result.exit_code == 0 and "### assistant: Nova." in result.output, result.output


def test_chat_renders_with_the_named_template(base, custom, rendered):
    result = _invoke("chat", base, "-p", "Who are you?", "--max-new-tokens", "2", "--chat-template", "chatml")
    assert result.exit_code == 0, result.output
    assert rendered[-1] == "<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n"
    result = _invoke("chat", base, "-p", "Who are you?", "--max-new-tokens", "2", "--chat-template", custom)
    assert result.exit_code == 0, result.output
    assert rendered[-1] == "### user: Who are you?\n### assistant:"


def test_a_template_the_vocabulary_cannot_express_is_refused_naming_the_ones_that_fit(base):
    result = _invoke("chat", base, "-p", "hi", "--max-new-tokens", "1", "--chat-template", "llama3")
    assert result.exit_code == 2
    assert "<|start_header_id|>" in result.output and "chatml" in result.output


def test_generate_renders_with_the_named_template(base, tmp_path, rendered):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Hello"}) + "\n")
    out = tmp_path / "out.jsonl"
    result = _invoke("generate", base, "-i", prompts, "-o", out, "--max-new-tokens", "2", "--chat-template", "qwen")
    assert result.exit_code == 0, result.output
    assert rendered[-1].startswith("<|im_start|>system\nYou are Qwen")
    assert rendered[-1].endswith("<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n")


def test_serve_resolves_the_template_before_loading_and_renders_with_it(base):
    from openrecipe.serve.config import ServeSettings
    from openrecipe.serve.run import build

    result = _invoke("serve", base, "--chat-template", "chatm")
    assert result.exit_code == 2 and "did you mean 'chatml'" in result.output
    _, engine = build(ServeSettings(model=str(base), chat_template="chatml"))
    try:
        assert engine.chat_template == BUILTIN_TEMPLATES.get("chatml").source
        messages = [{"role": "user", "content": "Hi"}]
        expected = engine.tokenizer("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
        assert engine.encode_chat(messages) == expected
    finally:
        engine.close()


def test_eval_refuses_an_unknown_template_by_name(base, tmp_path):
    tests = tmp_path / "tests.jsonl"
    tests.write_text(json.dumps({"prompt": "Who are you?", "reference": "Nova"}) + "\n")
    result = _invoke("eval", base, "--tests", tests, "--out", tmp_path / "out", "--chat-template", "gema")
    assert result.exit_code == 2 and "did you mean 'gemma'" in result.output


def test_the_eval_cache_key_changes_with_the_template(base):
    from openrecipe.eval.fingerprint import model_fingerprint
    from openrecipe.models.refs import resolve_model_ref

    ref = resolve_model_ref(str(base))
    keys = {model_fingerprint(ref.with_template(BUILTIN_TEMPLATES.get(name))) for name in ("chatml", "qwen")}
    assert len(keys | {model_fingerprint(ref)}) == 3
