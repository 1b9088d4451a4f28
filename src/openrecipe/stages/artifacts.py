"""`merge`, `quantize` and `export` stages: the path from a trained model to deployable artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field

from openrecipe.export.llama_quantize import LLAMA_CPP_TYPES
from openrecipe.merge.mergekit_merge import MergeInput, MergeMethod, MergeSettings
from openrecipe.quantize.torchao_backend import QuantMethod
from openrecipe.stages.base import StageConfig, StageContext, StageResult, stage_kind
from openrecipe.stages.training_common import DataRef, read_ref


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class MergeStage(StageConfig):
    kind: Literal["merge"] = "merge"
    method: MergeMethod = "linear"
    base: str | None = None
    models: list[MergeInput] = Field(min_length=1)
    t: float = Field(0.5, ge=0, le=1)


@stage_kind(MergeStage, "Merge models with mergekit")
def run_merge_stage(context: StageContext, config: MergeStage) -> StageResult:
    from openrecipe.merge.mergekit_merge import run_merge

    settings = MergeSettings(
        method=config.method,
        base=context.resolve_model(config.base) if config.base else None,
        t=config.t,
        models=[m.model_copy(update={"model": context.resolve_model(m.model)}) for m in config.models],
    )
    info = run_merge(settings, context.stage_dir / "model")
    return StageResult(metrics=info, artifacts={"model": str(context.stage_dir / "model")})


class QuantizeStage(StageConfig):
    kind: Literal["quantize"] = "quantize"
    model: str = Field("base", description="'base', 'stage:<id>' or any model reference")
    methods: list[QuantMethod] = Field(
        default_factory=lambda: ["int8"],
        min_length=1,
        description="int8 (per-group scales, best quality), int8_row (faster CPU decode), int4",
    )


@stage_kind(QuantizeStage, "INT8/INT4 weight quantization (torchao)")
def run_quantize(context: StageContext, config: QuantizeStage) -> StageResult:
    from openrecipe.merge.mergekit_merge import materialize
    from openrecipe.quantize.torchao_backend import quantize_folder

    source = materialize(context.resolve_model(config.model), context.stage_dir)
    artifacts, metrics = {}, {}
    for method in config.methods:
        out = quantize_folder(source, context.stage_dir / method, method)
        artifacts[method] = str(out)
        metrics[f"{method}_size_mb"] = round(_size(out) / 1e6, 1)
        context.console.print(f"  {method}: {metrics[f'{method}_size_mb']} MB")
    artifacts["model"] = artifacts[config.methods[0]]
    return StageResult(metrics=metrics, artifacts=artifacts)


class ExportStage(StageConfig):
    kind: Literal["export"] = "export"
    model: str = Field("base", description="'base', 'stage:<id>' or any model reference")
    gguf: list[str] = Field(default_factory=lambda: ["f16", "q8_0", "q4_0"], min_length=1)
    name: str | None = Field(None, description="File name stem (default: the recipe name)")
    modelfile: bool = Field(True, description="Write an Ollama Modelfile next to the first GGUF")
    calibration: list[DataRef] = Field(
        default_factory=list,
        description="Text or chat data (files or stage:<id>) for llama.cpp's importance matrix; "
        "use data the model will see, never the text you evaluate on",
    )


@stage_kind(ExportStage, "GGUF files (llama.cpp, Ollama) with an Ollama Modelfile")
def run_export(context: StageContext, config: ExportStage) -> StageResult:
    from transformers import AutoTokenizer

    from openrecipe.export.gguf_export import export_gguf
    from openrecipe.export.ollama import write_modelfile
    from openrecipe.merge.mergekit_merge import materialize

    folder = materialize(context.resolve_model(config.model), context.stage_dir)
    name = config.name or context.recipe_name or context.run_dir.name
    calibration = None
    if config.calibration and not any(qtype in LLAMA_CPP_TYPES for qtype in config.gguf):
        context.console.print("  [yellow]calibration is only used by llama.cpp types (q4_k_m, ...): ignored[/yellow]")
    elif config.calibration:
        from openrecipe.export.importance import calibration_texts

        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        records = [record for ref in config.calibration for record in read_ref(context, ref)]
        calibration = calibration_texts(records, tokenizer)
    files = export_gguf(folder, context.stage_dir, config.gguf, name=name, calibration=calibration)
    artifacts = {f"gguf_{qtype}": row["path"] for qtype, row in files.items()}
    metrics = {f"gguf_{qtype}_mb": round(row["size_bytes"] / 1e6, 1) for qtype, row in files.items()}
    for _qtype, row in files.items():
        context.console.print(f"  {Path(row['path']).name}: {row['size_bytes'] / 1e6:.1f} MB, {row['tensors']} tensors")
    if config.modelfile:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        first = Path(files[config.gguf[-1]]["path"]).name
        info = folder / "openrecipe.json"
        system = json.loads(info.read_text()).get("system_prompt") if info.is_file() else context.system_prompt
        artifacts["modelfile"] = str(
            write_modelfile(
                context.stage_dir / "Modelfile",
                first,
                tokenizer.chat_template or "",
                system,
                tokenizer.eos_token or "",
            )
        )
    return StageResult(metrics=metrics, artifacts=artifacts)
