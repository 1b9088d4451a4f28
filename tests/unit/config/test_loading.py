from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import Field

from openrecipe.config.base import StrictModel
from openrecipe.config.loading import apply_overrides, load_yaml_with_lines, validate_config
from openrecipe.errors import MultipleErrors, OpenRecipeError


class Inner(StrictModel):
    rank: int = Field(8, ge=1)
    alpha: float = 16


class Outer(StrictModel):
    name: str
    lora: Inner = Inner()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_lines_are_recorded(tmp_path):
    data, lines = load_yaml_with_lines(write(tmp_path, "name: x\nlora:\n  rank: 4\n"))
    assert data == {"name": "x", "lora": {"rank": 4}}
    assert lines[("lora", "rank")] == 3


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "name: x\nlora:\n  rank: [1, 2\n")
    with pytest.raises(OpenRecipeError) as info:
        load_yaml_with_lines(path)
    assert f"{path}:" in str(info.value)
    assert "YAML syntax error" in str(info.value)


def test_duplicate_key_is_an_error(tmp_path):
    with pytest.raises(OpenRecipeError, match=r"c.yaml:2: duplicate key 'name'"):
        load_yaml_with_lines(write(tmp_path, "name: x\nname: y\n"))


def test_typo_gets_suggestion_with_line_and_all_errors_at_once(tmp_path):
    path = write(tmp_path, "name: x\nlora:\n  rnak: 4\n  alpha: nope\n")
    data, lines = load_yaml_with_lines(path)
    with pytest.raises(MultipleErrors) as info:
        validate_config(Outer, data, lines=lines, source=str(path))
    errors = info.value.errors
    assert len(errors) == 2
    text = info.value.format()
    assert f"{path}:3: unknown key 'lora.rnak'" in text
    assert "did you mean 'rank'" in text
    assert f"{path}:4: lora.alpha" in text


def test_missing_field_is_named(tmp_path):
    with pytest.raises(MultipleErrors, match="name: required field is missing"):
        validate_config(Outer, {}, source="x.yaml")


def test_overrides_parse_values_and_address_ids():
    data = {"seed": 0, "stages": [{"id": "sft", "lr": 1e-3}]}
    apply_overrides(data, ["seed=7", "stages.sft.lr=1e-4", "stages.0.epochs=2", "new.key=[1, 2]"])
    assert data == {"seed": 7, "stages": [{"id": "sft", "lr": 1e-4, "epochs": 2}], "new": {"key": [1, 2]}}


def test_override_unknown_stage_id_suggests():
    with pytest.raises(OpenRecipeError, match="did you mean 'sft'"):
        apply_overrides({"stages": [{"id": "sft"}]}, ["stages.sfy.lr=1"])


def test_override_without_equals_is_rejected():
    with pytest.raises(OpenRecipeError, match="not key=value"):
        apply_overrides({}, ["seed"])


class CleanSettings(StrictModel):
    dedup: bool = True


class CleanStep(StrictModel):
    kind: Literal["clean"] = "clean"
    id: str
    clean: CleanSettings = CleanSettings()


class TrainStep(StrictModel):
    kind: Literal["train"] = "train"
    id: str
    lr: float = 1e-3


class Pipeline(StrictModel):
    stages: list[Annotated[CleanStep | TrainStep, Field(discriminator="kind")]]


def test_override_of_unknown_key_names_the_right_model_when_a_kind_is_also_a_field(tmp_path):
    # pydantic puts the member's tag ("clean") in the error path, and the clean stage also has a field
    # called "clean": the path and the allowed keys must come from the settings model, not the stage.
    path = write(tmp_path, "stages:\n  - id: data\n    kind: clean\n    clean:\n      dedup: true\n")
    data, lines = load_yaml_with_lines(path)
    apply_overrides(data, ["stages.data.clean.dedupe=false"])
    with pytest.raises(MultipleErrors) as info:
        validate_config(Pipeline, data, lines=lines, source=str(path))
    text = info.value.format()
    assert f"{path}:5: unknown key 'stages[data].clean.dedupe' — did you mean 'dedup'? allowed keys: dedup" in text
    data, lines = load_yaml_with_lines(path)
    apply_overrides(data, ["stages.data.colour=1"])
    with pytest.raises(MultipleErrors, match=r"'stages\[data\].colour' — allowed keys: clean, id, kind"):
        validate_config(Pipeline, data, lines=lines, source=str(path))
