"""Every stage kind × every reference form: validation accepts exactly what the run can resolve."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from openrecipe.cli.main import app
from openrecipe.config.references import BaseRef, DefaultRef, HubRef, PathRef, StageRef, resolve_location
from openrecipe.models.refs import ModelRef
from openrecipe.recipe.schema import load_recipe
from openrecipe.stages.base import StageContext, StageResult

runner = CliRunner()

# Earlier stages every case may point at: a model, a quantized model, GGUF files, prepared data.
UPSTREAM = [
    {"id": "data", "kind": "clean", "sources": [{"path": "faq.jsonl"}]},
    {"id": "tuned", "kind": "sft", "data": [{"path": "stage:data"}], "train": {"max_steps": 1}},
    {"id": "quant", "kind": "quantize", "model": "stage:tuned", "methods": ["int8"]},
    {"id": "gguf", "kind": "export", "model": "stage:tuned", "gguf": ["q8_0"]},
]


def model_field(kind: str, reference: str) -> dict:
    """A minimal stage of `kind` whose (first) model reference is `reference`."""
    return {
        "sft": {"kind": "sft", "model": reference, "data": [{"path": "stage:data"}]},
        "cpt": {"kind": "cpt", "model": reference, "domain": [{"path": "stage:data"}], "replay_ratio": 0},
        "generate": {"kind": "generate", "model": reference, "prompts": ["hi"]},
        "quantize": {"kind": "quantize", "model": reference},
        "export": {"kind": "export", "model": reference},
        "merge": {"kind": "merge", "method": "slerp", "base": "models/tiny-b", "models": [{"model": reference}]},
        "eval": {"kind": "eval", "variants": [{"name": "v", "model": reference}], "tests": ["t.jsonl"]},
        "parity": {"kind": "parity", "reference": reference, "artifacts": [{"name": "a", "model": "stage:tuned"}]},
    }[kind]


TRAINING = {"sft", "cpt", "merge"}
FULL_WEIGHTS = TRAINING | {"quantize", "export"}  # stages that cannot read a torchao-quantized folder
KINDS = ["sft", "cpt", "generate", "quantize", "export", "merge", "eval", "parity"]
# form -> kinds that refuse it (with the words the error must carry)
FORMS = {
    "base": {},
    "default": {},
    "stage:tuned": {},
    "stage:tuned/model": {},
    "stage:gguf/gguf_q8_0": {},
    "stage:quant/int8": dict.fromkeys(FULL_WEIGHTS, "a quantized artifact"),
    "stage:tuned/adapter": dict.fromkeys(KINDS, "a file artifact"),
    "stage:data": dict.fromkeys(KINDS, "produces no 'model'"),
    "stage:later": dict.fromkeys(KINDS, "a later stage"),
    "stage:nowhere": dict.fromkeys(KINDS, "no stage"),
    "stage:tuned/../x": dict.fromkeys(KINDS, "is not a stage reference"),
    "models/tiny": {},
    "./models/tiny": {},
    "/abs/model": {},
    "owner/name": {},
    "": dict.fromkeys(KINDS, "empty model reference"),
}


def write_recipe(folder: Path, kind: str, reference: str) -> Path:
    stage = {"id": "case", **model_field(kind, reference)}
    recipe = {
        "name": "refs",
        "stages": [*UPSTREAM, stage, {"id": "later", "kind": "sft", "data": [{"path": "stage:data"}]}],
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.mark.parametrize("form", list(FORMS), ids=lambda f: f or "empty")
@pytest.mark.parametrize("kind", KINDS)
def test_validate_accepts_what_runs_and_refuses_the_rest(tmp_path, kind, form):
    path = write_recipe(tmp_path, kind, form)
    result = runner.invoke(app, ["validate", str(path)])
    refusal = FORMS[form].get(kind)
    if refusal is None:
        assert result.exit_code == 0, result.output
    else:
        assert result.exit_code == 2, result.output
        text = " ".join(result.output.split())
        assert refusal in text and "stages[case]" in text, text


def test_references_are_typed_values_that_dump_back_to_what_was_written(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, "eval", "stage:quant/int8"))
    case = recipe.stages[4]
    assert case.variants[0].model == StageRef("quant", "int8")
    assert case.tests == [PathRef("t.jsonl")]
    assert recipe.stages[1].model == BaseRef() and recipe.base_model == DefaultRef()
    assert recipe.model_dump(mode="json")["stages"][4]["variants"][0]["model"] == "stage:quant/int8"
    assert recipe.stages[1].stage_refs() == ["data"]


def context(tmp_path: Path, recipe_dir: Path, *, confined: bool = False) -> StageContext:
    tuned = tmp_path / "run" / "tuned" / "model"
    return StageContext(
        run_dir=tmp_path / "run",
        stage_dir=tmp_path / "run" / "case",
        seed=0,
        base_model="default",
        system_prompt=None,
        identity=None,
        results={"tuned": StageResult(artifacts={"model": str(tuned), "adapter": str(tuned.parent / "adapter")})},
        recipe_dir=recipe_dir,
        options={"confined": confined},
    )


def test_accepted_forms_resolve_to_a_model_ref(tmp_path, tiny_model_dir, monkeypatch):
    """What validation accepts, the context resolves; relative paths only against the recipe's folder."""
    import shutil

    recipe_dir = tmp_path / "project"
    shutil.copytree(tiny_model_dir, recipe_dir / "models" / "tiny")
    shutil.copytree(tiny_model_dir, tmp_path / "run" / "tuned" / "model")
    shutil.copytree(tiny_model_dir, recipe_dir / "owner" / "name")
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(tiny_model_dir, elsewhere / "models" / "tiny2")
    monkeypatch.chdir(elsewhere)
    ctx = context(tmp_path, recipe_dir)
    for reference, expected in [
        (StageRef("tuned"), tmp_path / "run" / "tuned" / "model"),
        (StageRef("tuned", "model"), tmp_path / "run" / "tuned" / "model"),
        (PathRef("models/tiny"), recipe_dir / "models" / "tiny"),
        (PathRef("./models/tiny"), recipe_dir / "models" / "tiny"),
        (PathRef(str(recipe_dir / "models" / "tiny")), recipe_dir / "models" / "tiny"),
        (HubRef("owner/name"), recipe_dir / "owner" / "name"),  # a folder beside the recipe wins
    ]:
        ref = ctx.resolve_model(reference)
        assert isinstance(ref, ModelRef) and ref.kind == "hf_folder" and ref.path == expected.resolve()
    assert ctx.resolve_model(HubRef("someone/else")).kind == "hub"
    # The working folder is never a fallback: models/tiny2 exists there, not beside the recipe.
    assert resolve_location(PathRef("models/tiny2"), recipe_dir) == recipe_dir / "models" / "tiny2"
    with pytest.raises(Exception, match="not found"):
        ctx.resolve_model(PathRef("models/tiny2"))


def test_data_and_input_fields_take_only_their_forms(tmp_path):
    for stage, words in [
        ({"kind": "sft", "data": [{"path": ""}]}, "empty data reference"),
        ({"kind": "eval", "variants": [{"name": "v", "model": "base"}], "tests": ["stage:data"]}, "not a stage"),
        ({"kind": "generate", "input": "stage:data"}, "not a stage reference"),
        ({"kind": "sft", "data": [{"path": "stage:tuned"}]}, "produces no 'data'"),
    ]:
        path = tmp_path / "r.yaml"
        recipe = {"name": "x", "stages": [*UPSTREAM, {"id": "case", **stage}]}
        path.write_text(yaml.safe_dump(recipe))
        result = runner.invoke(app, ["validate", str(path)])
        assert result.exit_code == 2 and words in " ".join(result.output.split()), result.output


def test_schema_shows_references_as_strings_with_their_defaults():
    from openrecipe.recipe.schema import recipe_json_schema

    schema = recipe_json_schema()
    assert schema["properties"]["base_model"] == {
        "default": "default",
        "description": schema["properties"]["base_model"]["description"],
        "title": "Base Model",
        "type": "string",
    }
    for kind in ("SftStage", "CptStage", "GenerateStage", "QuantizeStage", "ExportStage"):
        model = schema["$defs"][kind]["properties"]["model"]
        assert model["type"] == "string" and model["default"] == "base"
