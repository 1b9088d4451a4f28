"""The recipe's `chat_template`: parsed once (a built-in name or a recipe-relative .jinja file), checked at
`validate` against the model folders it would train, and handed to every model a stage loads from outside
the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from openrecipe.config.references import PathRef, TemplateName
from openrecipe.errors import MultipleErrors
from openrecipe.recipe.schema import load_recipe

SFT = {"id": "sft", "kind": "sft", "data": [{"path": "chats.jsonl"}]}
CPT = {"id": "cpt", "kind": "cpt", "domain": [{"path": "notes.txt"}]}


def _base(folder: Path, template: str | None) -> Path:
    """Just the tokenizer files `validate` reads (no weights: nothing is loaded)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"tokenizer_class": "PreTrainedTokenizerFast"}
    if template is not None:
        config["chat_template"] = template
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def _recipe(tmp_path: Path, stages: list[dict], **settings) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"name": "r", "base_model": "./base", **settings, "stages": stages}))
    return path


@pytest.mark.parametrize(
    ("setting", "parsed"),
    [
        ("chatml", TemplateName("chatml")),
        ("templates/mine.jinja", PathRef("templates/mine.jinja")),
        ("mine.j2", PathRef("mine.j2")),
    ],
)
def test_a_name_or_a_file_parsed_once_and_written_back_as_given(tmp_path, setting, parsed):
    _base(tmp_path / "base", "{{ messages }}")
    (tmp_path / "templates").mkdir()
    for name in ("templates/mine.jinja", "mine.j2"):
        (tmp_path / name).write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
    recipe = load_recipe(_recipe(tmp_path, [SFT], chat_template=setting))
    assert recipe.chat_template == parsed
    assert recipe.model_dump(mode="json")["chat_template"] == setting


def test_an_unknown_name_suggests_the_nearest_and_lists_the_built_ins(tmp_path):
    _base(tmp_path / "base", None)
    with pytest.raises(MultipleErrors) as raised:
        load_recipe(_recipe(tmp_path, [SFT], chat_template="lama3"))
    text = raised.value.format()
    assert "chat_template" in text and "did you mean 'llama3'" in text and "or give a .jinja file" in text


@pytest.mark.parametrize(
    ("stages", "refused"),
    [
        ([SFT], True),
        ([CPT, {**SFT, "model": "stage:cpt"}], True),  # cpt keeps the base's tokenizer: still no template
        ([CPT], False),  # plain text needs no template
        ([{**SFT, "model": "default"}], False),
    ],
)
def test_validate_refuses_to_fine_tune_a_local_base_model_without_a_template(tmp_path, stages, refused):
    _base(tmp_path / "base", None)
    path = _recipe(tmp_path, stages)
    if not refused:
        load_recipe(path)
        return
    with pytest.raises(MultipleErrors) as raised:
        load_recipe(path)
    text = raised.value.format()
    assert "stage 'sft' fine-tunes" in text and "has no chat template" in text and "chat_template:" in text
    load_recipe(_recipe(tmp_path, stages, chat_template="mistral"))  # the setting is the fix


def test_a_model_with_its_own_template_needs_no_setting(tmp_path):
    _base(tmp_path / "base", "{{ messages }}")
    load_recipe(_recipe(tmp_path, [SFT]))


def test_a_bundle_recipe_cannot_name_a_template_outside_itself(tmp_path):
    _base(tmp_path / "base", "{{ messages }}")
    (tmp_path.parent / "outside.jinja").write_text("{{ messages }}")
    with pytest.raises(MultipleErrors, match="leaves the bundle"):
        load_recipe(_recipe(tmp_path, [SFT], chat_template="../outside.jinja"), confined=True)


def test_stages_give_the_template_to_models_from_outside_the_run_only(tmp_path):
    from openrecipe.config.references import BaseRef, StageRef
    from openrecipe.models.templates import BUILTIN_TEMPLATES
    from openrecipe.stages.base import StageContext, StageResult

    base = _base(tmp_path / "base", None)
    (base / "config.json").write_text("{}")
    (base / "model.safetensors").write_bytes(b"")
    trained = _base(tmp_path / "run" / "sft" / "model", "{{ messages }}")
    (trained / "config.json").write_text("{}")
    (trained / "model.safetensors").write_bytes(b"")
    chatml = BUILTIN_TEMPLATES.get("chatml")
    context = StageContext(
        run_dir=tmp_path / "run",
        stage_dir=tmp_path / "run" / "next",
        seed=0,
        base_model=str(base),
        system_prompt=None,
        identity=None,
        results={"sft": StageResult(artifacts={"model": str(trained)})},
        chat_template=chatml,
    )
    assert context.resolve_model(BaseRef()).template == chatml
    assert context.resolve_model(StageRef("sft")).template is None  # it carries the one it was trained with
