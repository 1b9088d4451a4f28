"""Export a model folder to GGUF files of several types, and an Ollama Modelfile: one function for the
`export` command and the `export` stage.

f32/f16/bf16/q8_0 come from llama.cpp's own converter (run in a subprocess, see `hf_to_gguf`), the other
types from llama.cpp's quantizer applied to the F16 file this call wrote. Every file is read back with the
bounds-checked header reader and its tokenizer checked against the model's own in llama.cpp.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from openrecipe.errors import OpenRecipeError
from openrecipe.export.gguf_types import DEFAULT_CALIBRATION_TOKENS, gguf_type
from openrecipe.models.gguf_header import check_gguf
from openrecipe.utils.fs import atomic_write_json

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_name(name: str) -> str:
    """A file-name stem that cannot leave the output folder."""
    if not SAFE_NAME.fullmatch(name) or ".." in name:
        raise OpenRecipeError(
            f"GGUF name {name!r} is not a plain file name",
            fix="use letters, digits, '.', '_' and '-' (no '/', no '..', not starting with '.')",
        )
    return name


def read_back(path: Path) -> dict[str, Any]:
    """What the file says about itself: architecture, tensor types, vocabulary, whether a chat template is in."""
    from gguf.constants import GGMLQuantizationType

    header = check_gguf(path)
    types: dict[str, int] = {}
    for type_id, _shape in header.tensors.values():
        name = GGMLQuantizationType(type_id).name
        types[name] = types.get(name, 0) + 1
    tokens = header.metadata.get("tokenizer.ggml.tokens")
    return {
        "architecture": header.architecture,
        "tensors": len(header.tensors),
        "tensor_types": types,
        "has_chat_template": bool(header.chat_template),
        "tokenizer": header.metadata.get("tokenizer.ggml.model"),
        "pre_tokenizer": header.metadata.get("tokenizer.ggml.pre"),
        "tokens": tokens[1] if isinstance(tokens, tuple) else 0,
    }


def convert(folder: Path, targets: dict[str, Path], *, name: str) -> dict[str, Path]:
    """llama.cpp's convert_hf_to_gguf.py on `folder`, one process for every {outtype: file} (each written
    atomically); its user errors (unknown architecture, unknown tokenizer) become ours."""
    from openrecipe.export.converter import converter_dir
    from openrecipe.export.hf_to_gguf import USER_ERROR_EXIT, USER_ERROR_PREFIX

    tool = converter_dir()
    temporary = {outtype: out.with_name(f".{out.name}.tmp") for outtype, out in targets.items()}
    for out in targets.values():
        out.parent.mkdir(parents=True, exist_ok=True)
    package_root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(package_root), os.environ.get("PYTHONPATH")])),
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("NO_LOCAL_GGUF", None)
    command = [sys.executable, "-m", "openrecipe.export.hf_to_gguf", str(tool), str(folder), name]
    command += [f"{outtype}={tmp}" for outtype, tmp in temporary.items()]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0 or not all(tmp.is_file() for tmp in temporary.values()):
        for tmp in temporary.values():
            tmp.unlink(missing_ok=True)
        lines = [line for line in result.stderr.splitlines() if line.startswith(USER_ERROR_PREFIX)]
        if result.returncode == USER_ERROR_EXIT and lines:
            raise OpenRecipeError(
                f"cannot export {folder} to GGUF: {lines[-1][len(USER_ERROR_PREFIX) :]}",
                fix="export a model of an architecture llama.cpp supports (see convert_hf_to_gguf.py "
                "--print-supported-models), or keep the model in safetensors",
            )
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"llama.cpp's converter failed on {folder} (exit {result.returncode}):\n{tail}")
    for outtype, tmp in temporary.items():
        tmp.replace(targets[outtype])
    return targets


def _source_has_template(folder: Path) -> bool:
    import json

    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        return bool(json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template"))
    except (OSError, ValueError):
        return False


def export_gguf(
    folder: Path,
    out_dir: Path,
    types: list[str],
    *,
    name: str,
    calibration: list[str] | None = None,
    calibration_tokens: int = DEFAULT_CALIBRATION_TOKENS,
) -> dict[str, Any]:
    """Write one GGUF per type; quantizer types get an importance matrix when calibration text is given."""
    check_name(name)
    entries = [gguf_type(qtype) for qtype in dict.fromkeys(types)]
    out_dir.mkdir(parents=True, exist_ok=True)
    wants_template = _source_has_template(folder)
    targets = {entry.name: out_dir / f"{name}-{entry.name}.gguf" for entry in entries}
    quantized = [entry.name for entry in entries if entry.producer == "quantize"]
    files: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
        converted = {entry.name: targets[entry.name] for entry in entries if entry.producer == "convert"}
        if quantized and "f16" not in converted:  # the quantizers' source: always an F16 written by this call
            converted["f16"] = Path(tmp) / "f16.gguf"
        if converted:
            convert(folder, converted, name=name)
        imatrix, calibrated = None, 0
        if quantized and calibration:
            from openrecipe.export.importance import importance_matrix

            imatrix, calibrated = importance_matrix(
                folder, calibration, gguf_file=converted["f16"], max_tokens=calibration_tokens
            )
        for entry in entries:
            target, quantizer = targets[entry.name], {}
            if entry.producer == "quantize":
                from openrecipe.export.llama_quantize import quantize_gguf

                quantizer = quantize_gguf(converted["f16"], target, entry.name, imatrix=imatrix)
                quantizer["calibration_tokens"] = calibrated
            info = read_back(target)
            if wants_template and not info["has_chat_template"]:
                raise OpenRecipeError(f"{target.name} has no chat template after export")
            files[entry.name] = {"path": str(target), "size_bytes": target.stat().st_size, **info, **quantizer}
    # The record on disk names files relative to its folder: the folder may move (a stage's temporary folder
    # becomes the stage folder) or be published, and an absolute path would point nowhere or leak the machine.
    atomic_write_json(
        out_dir / "gguf.json", {qtype: {**row, "path": Path(row["path"]).name} for qtype, row in files.items()}
    )
    return files


def export_model(
    folder: Path,
    out_dir: Path,
    types: list[str],
    *,
    name: str,
    calibration_records: list | None = None,
    calibration_tokens: int = DEFAULT_CALIBRATION_TOKENS,
    system_prompt: str | None = None,
    modelfile: bool = True,
) -> dict[str, Any]:
    """GGUF files plus an Ollama Modelfile for the last of them: what `export` and the export stage both run."""
    from transformers import AutoTokenizer

    from openrecipe.export.ollama import write_modelfile
    from openrecipe.models.loading import check_full_weights

    check_name(name)
    check_full_weights(folder, "exported to GGUF")
    for qtype in types:
        gguf_type(qtype)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    texts = None
    if calibration_records:
        from openrecipe.export.importance import calibration_texts

        texts = calibration_texts(calibration_records, tokenizer)
    files = export_gguf(folder, out_dir, types, name=name, calibration=texts, calibration_tokens=calibration_tokens)
    result: dict[str, Any] = {"files": files}
    if modelfile:
        last = Path(files[types[-1]]["path"]).name
        template, eos = tokenizer.chat_template or "", tokenizer.eos_token or ""
        result["modelfile"] = str(write_modelfile(out_dir / "Modelfile", last, template, system_prompt, eos))
    return result
