"""`merge`, `quantize`, `export`: the same components the recipe stages use, from the command line."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from openrecipe.export.gguf_types import DEFAULT_CALIBRATION_TOKENS

console = Console()


def register(app: typer.Typer) -> None:
    app.command(
        help="Merge models of one architecture with mergekit (linear, slerp, ties, dare_ties, task_arithmetic)."
    )(merge)
    app.command(help="INT8/INT4 weight-only quantization (torchao), saved as safetensors.")(quantize)
    app.command(help="Export GGUF files (f16, q8_0, q4_0, q4_k_m, ...) and an Ollama Modelfile.")(export)


def merge(
    models: list[str] = typer.Option(..., "--models", "-m", help="Models (or adapters) to merge; repeat or list."),
    out: Path = typer.Option(..., "--out", "-o"),
    method: str = typer.Option("linear", "--method"),
    base: str | None = typer.Option(
        None, "--base", help="Base model (needed by slerp, ties, dare_ties, task_arithmetic)."
    ),
    weights: list[float] = typer.Option([], "--weight", help="One weight per model, in order."),
    density: float | None = typer.Option(None, "--density", help="ties/dare_ties density."),
    t: float = typer.Option(0.5, "--t", help="slerp factor."),
) -> None:
    from openrecipe.config.loading import validate_config
    from openrecipe.errors import OpenRecipeError
    from openrecipe.merge.mergekit_merge import MergeSettings, run_merge

    if weights and len(weights) != len(models):
        raise OpenRecipeError(f"{len(weights)} --weight values for {len(models)} models", fix="give one per model")
    specs = [{"model": m, "weight": weights[i] if weights else 1.0, "density": density} for i, m in enumerate(models)]
    settings = validate_config(
        MergeSettings, {"method": method, "base": base, "models": specs, "t": t}, source="command line"
    )
    run_merge(settings, out)
    console.print(f"merged {len(models)} model(s) with {method} into {out}")


def quantize(
    model: str = typer.Argument(...),
    out: Path = typer.Option(..., "--out", "-o"),
    method: str = typer.Option(
        "int8", "--method", help="int8 (per-group) or int8_row (faster CPU decode); for 4-bit: export --gguf q4_k_m."
    ),
    chat_template: str | None = typer.Option(
        None, "--chat-template", help="Write this template into the output: a built-in name or a .jinja file."
    ),
) -> None:
    from openrecipe.models.materialize import materialize
    from openrecipe.quantize.torchao_backend import check_method, quantize_folder

    check_method(method)
    out.mkdir(parents=True, exist_ok=True)
    quantize_folder(materialize(_with_template(model, chat_template), out), out / method, method)
    console.print(f"wrote {out / method}")


def export(
    model: str = typer.Argument(...),
    out: Path = typer.Option(..., "--out", "-o"),
    gguf: list[str] = typer.Option(["q8_0", "q4_0"], "--gguf", help="GGUF types (repeat)."),
    name: str = typer.Option("model", "--name"),
    system: str | None = typer.Option(None, "--system", help="SYSTEM line of the Ollama Modelfile."),
    calibration: list[Path] = typer.Option(
        [], "--calibration", help="Text/chat data for llama.cpp's importance matrix (repeat; K-quant types)."
    ),
    calibration_tokens: int = typer.Option(
        DEFAULT_CALIBRATION_TOKENS,
        "--calibration-tokens",
        min=256,
        help="At most this many calibration tokens, texts taken evenly across the data.",
    ),
    chat_template: str | None = typer.Option(
        None, "--chat-template", help="Write this template into the output: a built-in name or a .jinja file."
    ),
) -> None:
    from openrecipe.export.gguf_export import export_model
    from openrecipe.export.llama_quantize import fallback_line
    from openrecipe.models.materialize import materialize

    records = None
    if calibration:
        from openrecipe.data.config import DataSource
        from openrecipe.data.load import load_source

        records = [record for path in calibration for record in load_source(DataSource(path=str(path))).records]
    out.mkdir(parents=True, exist_ok=True)
    folder = materialize(_with_template(model, chat_template), out)
    files = export_model(
        folder,
        out,
        gguf,
        name=name,
        calibration_records=records,
        calibration_tokens=calibration_tokens,
        system_prompt=system,
    )["files"]
    for row in files.values():
        fallbacks = fallback_line(row)  # llama.cpp's per-tensor lines are in native.log beside the files
        console.print(
            f"{Path(row['path']).name}: {row['size_bytes'] / 1e6:.1f} MB" + (f"; {fallbacks}" if fallbacks else "")
        )


def _with_template(model: str, chat_template: str | None):
    """The model reference, with the template named on the command line (read before any model is loaded)."""
    from openrecipe.models.refs import resolve_model_ref
    from openrecipe.models.templates import resolve_chat_template

    template = resolve_chat_template(chat_template) if chat_template is not None else None
    return resolve_model_ref(model).with_template(template)
