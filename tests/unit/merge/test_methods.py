"""Contract tests over every registered merge method: the validator, the schema and mergekit agree."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from openrecipe.merge.mergekit_merge import MERGE_METHODS, MergeInput, MergeSettings, _mergekit_config


def minimal(method: str) -> dict:
    spec = MERGE_METHODS.get(method)
    models = [{"model": f"m{i}"} for i in range(spec.exact_models or max(1, spec.min_inputs - 1))]
    return {"method": method, "base": "base-model", "models": models}


@pytest.mark.parametrize("method", MERGE_METHODS.names())
def test_minimal_config_validates_and_builds_a_mergekit_config(tmp_path, method):
    settings = MergeSettings.model_validate(minimal(method))
    folders = [tmp_path / name for name in ("base", *map(str, range(len(settings.models))))]
    for folder in folders:
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"num_hidden_layers": 2}))
    config = _mergekit_config(settings, folders[0], list(zip(settings.models, folders[1:], strict=True)))
    assert config["merge_method"] == method
    from mergekit.config import MergeConfiguration

    MergeConfiguration.model_validate(config)  # mergekit itself accepts what we build


@pytest.mark.parametrize("method", MERGE_METHODS.names())
def test_base_is_required_exactly_when_the_spec_says(method):
    data = minimal(method)
    data.pop("base")
    if MERGE_METHODS.get(method).needs_base:
        with pytest.raises(ValidationError, match="needs `base`"):
            MergeSettings.model_validate(data)
    else:
        data["models"].append({"model": "other"})
        MergeSettings.model_validate(data)


def test_schema_lists_exactly_the_registered_methods():
    schema = MergeSettings.model_json_schema()
    assert sorted(schema["properties"]["method"]["enum"]) == MERGE_METHODS.names()


def test_unknown_method_suggests_the_nearest():
    from openrecipe.errors import OpenRecipeError

    with pytest.raises(OpenRecipeError, match="did you mean 'ties'"):
        MERGE_METHODS.get("tie")
    assert MergeInput(model="x").weight == 1.0


def test_a_model_named_twice_is_refused_at_validation_and_at_run_time(tmp_path, tiny_model_dir):
    from openrecipe.errors import OpenRecipeError
    from openrecipe.merge.mergekit_merge import run_merge

    with pytest.raises(ValidationError, match="named more than once"):
        MergeSettings(method="slerp", base="base", models=[MergeInput(model="base")])
    # Two spellings of one folder pass validation; the run refuses them before mergekit does.
    settings = MergeSettings(
        method="linear", models=[MergeInput(model=str(tiny_model_dir)), MergeInput(model=f"{tiny_model_dir}/.")]
    )
    with pytest.raises(OpenRecipeError, match="are the same model"):
        run_merge(settings, tmp_path / "out")
