"""GGUF types are registry entries: each one is produced by the tool it names, unknown names get a hint."""

from __future__ import annotations

import re

import pytest

from openrecipe.config.loading import validate_config
from openrecipe.errors import OpenRecipeError
from openrecipe.export.converter import converter_dir
from openrecipe.export.gguf_types import GGUF_TYPES, gguf_type
from openrecipe.stages.artifacts import ExportStage


def converter_outtypes() -> set[str]:
    source = (converter_dir() / "convert_hf_to_gguf.py").read_text(encoding="utf-8")
    choices = re.search(r'"--outtype", type=str, choices=\[([^\]]*)\]', source)
    assert choices, "convert_hf_to_gguf.py no longer declares --outtype choices"
    return set(re.findall(r'"([a-z0-9_]+)"', choices.group(1)))


@pytest.mark.parametrize("name", GGUF_TYPES.names())
def test_every_type_is_produced_by_the_tool_it_names(name):
    entry = gguf_type(name)
    assert entry.name == name and entry.description
    assert entry.llama_ftype.startswith("LLAMA_FTYPE_")
    if entry.producer == "convert":
        assert name in converter_outtypes()
    else:
        assert entry.producer == "quantize"
        from openrecipe.models.llamacpp import load_llama_cpp

        assert isinstance(getattr(load_llama_cpp(), entry.llama_ftype), int)


@pytest.mark.parametrize("name", GGUF_TYPES.names())
def test_the_export_stage_accepts_every_registered_type(name):
    stage = validate_config(ExportStage, {"id": "export", "kind": "export", "gguf": [name]}, source="test")
    assert stage.gguf == [name]


def test_an_unknown_type_is_refused_with_the_nearest_name():
    with pytest.raises(OpenRecipeError, match=r"unknown GGUF type 'q4km'; did you mean 'q4_k_m'\?"):
        gguf_type("q4km")
    with pytest.raises(OpenRecipeError, match="did you mean 'q8_0'"):
        validate_config(ExportStage, {"id": "export", "kind": "export", "gguf": ["q8"]}, source="test")


def test_a_name_that_would_leave_the_output_folder_is_refused(tmp_path):
    from openrecipe.export.gguf_export import export_gguf

    for name in ("../escaped", "/abs", ".hidden", "a/b"):
        with pytest.raises(OpenRecipeError, match="is not a plain file name"):
            export_gguf(tmp_path, tmp_path / "out", ["f16"], name=name)
    assert not (tmp_path / "out").exists()
