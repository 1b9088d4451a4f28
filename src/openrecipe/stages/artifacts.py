"""`merge`, `quantize` and `export` stages: the path from a trained model to deployable artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from openrecipe.config.references import SAFE_NAME_PATTERN, FullWeightsModelReference
from openrecipe.export.gguf_types import DEFAULT_CALIBRATION_TOKENS, GGUF_TYPES, gguf_type
from openrecipe.merge.mergekit_merge import MergeSettings
from openrecipe.models.materialize import materialize
from openrecipe.provenance.records import artifact_bytes
from openrecipe.quantize.torchao_backend import QuantMethod
from openrecipe.stages.base import FILE, GGUF, MODEL, QUANTIZED, StageConfig, StageContext, StageResult, stage_kind
from openrecipe.stages.training_common import DataRef, read_ref


class MergeStage(StageConfig, MergeSettings):
    """A merge stage is `MergeSettings` (validator included) plus a stage id."""

    kind: Literal["merge"] = "merge"

    def artifact_kinds(self) -> dict[str, str]:
        return {"model": MODEL}


@stage_kind(MergeStage, "Merge models with mergekit")
def run_merge_stage(context: StageContext, config: MergeStage) -> StageResult:
    from openrecipe.merge.mergekit_merge import run_merge

    settings = MergeSettings.model_validate(config.model_dump(include=set(MergeSettings.model_fields)))
    info = run_merge(settings, context.stage_dir / "model", resolve=context.resolve_model)
    return StageResult(metrics=info, artifacts={"model": str(context.stage_dir / "model")})


class QuantizeStage(StageConfig):
    kind: Literal["quantize"] = "quantize"
    model: FullWeightsModelReference = Field("base", validate_default=True, description="The model to quantize")
    methods: list[QuantMethod] = Field(
        default_factory=lambda: ["int8"],
        min_length=1,
        description="int8 (per-group scales, best quality) or int8_row (faster CPU decode); 4-bit: export gguf q4_k_m",
    )

    def artifact_kinds(self) -> dict[str, str]:
        return {**{method: QUANTIZED for method in self.methods}, "model": QUANTIZED}


@stage_kind(QuantizeStage, "INT8 weight quantization (torchao)")
def run_quantize(context: StageContext, config: QuantizeStage) -> StageResult:
    from openrecipe.quantize.torchao_backend import quantize_folder

    source = materialize(context.resolve_model(config.model), context.stage_dir)
    artifacts, metrics = {}, {}
    for method in config.methods:
        out = quantize_folder(source, context.stage_dir / method, method)
        artifacts[method] = str(out)
        metrics[f"{method}_size_mb"] = round(artifact_bytes(out) / 1e6, 1)
        context.console.print(f"  {method}: {metrics[f'{method}_size_mb']} MB")
    artifacts["model"] = artifacts[config.methods[0]]
    return StageResult(metrics=metrics, artifacts=artifacts)


class ExportStage(StageConfig):
    kind: Literal["export"] = "export"
    model: FullWeightsModelReference = Field("base", validate_default=True, description="The model to export")
    gguf: list[str] = Field(
        default_factory=lambda: ["f16", "q8_0", "q4_0"], min_length=1, description="GGUF types to write"
    )
    name: str | None = Field(
        None, pattern=SAFE_NAME_PATTERN, description="File name stem, no folders (default: the recipe name)"
    )
    modelfile: bool = Field(True, description="Write an Ollama Modelfile next to the first GGUF")
    calibration: list[DataRef] = Field(
        default_factory=list,
        description="Text or chat data (files or stage:<id>) for llama.cpp's importance matrix; "
        "use data the model will see, never the text you evaluate on",
    )
    calibration_tokens: int = Field(
        DEFAULT_CALIBRATION_TOKENS,
        ge=256,
        description="At most this many calibration tokens, texts taken evenly across the calibration data",
    )

    @field_validator("gguf")
    @classmethod
    def _known_types(cls, types: list[str]) -> list[str]:
        for qtype in types:
            if qtype not in GGUF_TYPES:
                raise ValueError(GGUF_TYPES.unknown_message(qtype))
        return types

    def artifact_kinds(self) -> dict[str, str]:
        kinds = {f"gguf_{qtype}": GGUF for qtype in self.gguf}
        return {**kinds, "modelfile": FILE} if self.modelfile else kinds


@stage_kind(ExportStage, "GGUF files (llama.cpp, Ollama) with an Ollama Modelfile")
def run_export(context: StageContext, config: ExportStage) -> StageResult:
    from openrecipe.export.gguf_export import export_model
    from openrecipe.export.llama_quantize import fallback_line

    folder = materialize(context.resolve_model(config.model), context.stage_dir)
    records = None
    if config.calibration and not any(gguf_type(qtype).producer == "quantize" for qtype in config.gguf):
        context.console.print("  [yellow]calibration is only used by llama.cpp types (q4_k_m, ...): ignored[/yellow]")
    elif config.calibration:
        records = [record for ref in config.calibration for record in read_ref(context, ref)]
    info = folder / "openrecipe.json"
    system = json.loads(info.read_text()).get("system_prompt") if info.is_file() else context.system_prompt
    result = export_model(
        folder,
        context.stage_dir,
        config.gguf,
        name=config.name or context.recipe_name or context.run_dir.name,
        calibration_records=records,
        calibration_tokens=config.calibration_tokens,
        system_prompt=system,
        modelfile=config.modelfile,
    )
    files = result["files"]
    artifacts = {f"gguf_{qtype}": row["path"] for qtype, row in files.items()}
    metrics = {f"gguf_{qtype}_mb": round(row["size_bytes"] / 1e6, 1) for qtype, row in files.items()}
    for row in files.values():
        fallbacks = fallback_line(row)  # llama.cpp's per-tensor lines are in native.log; one line here
        context.console.print(
            f"  {Path(row['path']).name}: {row['size_bytes'] / 1e6:.1f} MB, {row['tensors']} tensors"
            + (f"; {fallbacks}" if fallbacks else "")
        )
    if "modelfile" in result:
        artifacts["modelfile"] = result["modelfile"]
    return StageResult(metrics=metrics, artifacts=artifacts)
