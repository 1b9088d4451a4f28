"""The bundle's README.md: a Hugging Face model card (metadata the Hub reads, then the story of the run)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from openrecipe.provenance.records import RunRecord, summarize

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CACHE_FOLDER = re.compile(r"^models--([\w.-]+)--([\w.-]+)$")


def base_hub_id(base_model: str, recipe_dir: Path | None) -> str | None:
    """The hub id a reader can fetch the base model by: the default model's, a hub id as given, or the id a
    local folder came from (a hub cache folder, or one the folder records); None when nothing says."""
    from openrecipe.models.default import DEFAULT_HUB_ID

    if base_model == "default":
        return DEFAULT_HUB_ID
    path = Path(base_model).expanduser()
    if not path.is_absolute() and recipe_dir is not None:
        path = recipe_dir / path
    if not path.exists():
        return base_model if _HUB_ID.match(base_model) else None
    for part in reversed(path.resolve().parts):
        match = _CACHE_FOLDER.match(part)
        if match:
            return f"{match.group(1)}/{match.group(2)}"
    for name, key in (("openrecipe.json", "base_model_hub_id"), ("config.json", "_name_or_path")):
        try:
            value = json.loads((path / name).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(value, str) and _HUB_ID.match(value) and not Path(value).exists():
            return value
    return None


def dataset_names(manifest: dict[str, Any], run: RunRecord) -> list[str]:
    """Hub datasets by id; local sources of clean stages by their label (the file's stem)."""
    recipe_dir = Path(manifest["recipe_dir"]) if manifest.get("recipe_dir") else Path.cwd()
    names = [
        entry["value"]
        for entry in manifest.get("input_fields", [])
        if entry.get("kind") == "hub" and not (recipe_dir / entry["value"]).exists()  # a folder of that name wins
    ]
    for stage in run.stages:
        if stage.kind == "clean":
            for source in _stage_config(manifest, stage.id).get("sources", []):
                label = source.get("name") or Path(str(source.get("path", ""))).stem
                if label and Path(str(source.get("path"))).name not in names:
                    names.append(label)
    return sorted(dict.fromkeys(names))


def _stage_config(manifest: dict[str, Any], stage_id: str) -> dict[str, Any]:
    return next((s for s in manifest["recipe"].get("stages", []) if s.get("id") == stage_id), {})


def eval_results(name: str, run: RunRecord) -> list[Any]:
    from huggingface_hub import EvalResult

    summary = summarize(run)
    results = []
    for row in (summary.leaderboard or {}).get("rows", []):
        for domain, cell in row["cells"].items():
            if "score" in cell:
                results.append(
                    EvalResult(
                        task_type="text-generation",
                        dataset_type=f"{name}/{domain}",
                        dataset_name=f"{domain} (held-out test set, in data/)",
                        metric_type="accuracy",
                        metric_name=f"{row['variant']} {domain}",
                        metric_value=round(cell["score"], 4),
                    )
                )
    return results


def model_card(
    manifest: dict[str, Any], run: RunRecord, run_dir: Path, *, license: str, base_model: str | None, raw: bool
) -> str:
    from huggingface_hub import ModelCard, ModelCardData

    recipe = manifest["recipe"]
    tags = ["openrecipe", "reproducible"]
    if any(artifact.kind == "gguf" for stage in run.stages for artifact in stage.artifacts.values()):
        tags.append("gguf")
    data = ModelCardData(
        model_name=recipe["name"],
        base_model=base_model,
        license=license,
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=tags,
        datasets=dataset_names(manifest, run) or None,
        eval_results=eval_results(recipe["name"], run) or None,
    )
    body = _body(recipe, run, run_dir, raw=raw)
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def _body(recipe: dict[str, Any], run: RunRecord, run_dir: Path, *, raw: bool) -> str:
    summary = summarize(run)
    lines = [
        f"# {recipe['name']}",
        "",
        recipe.get("description") or "",
        "",
        "Built and published with openrecipe: everything needed to re-run and verify it is in this repository. "
        "The fine-tuned weights are at the top level, so `AutoModelForCausalLM.from_pretrained(repo_id)` loads them.",
        "",
        "## What was done",
        "",
    ]
    lines += [f"- `{s['id']}` ({s['kind']}): {s['status']}, {s['seconds']:.0f} s" for s in summary.stages]
    lines += ["", "## Data and cleaning", ""]
    lines += [f"- {line}" for line in summary.cleaning]
    lines += [
        "",
        "Input files (SHA-256) are listed in `manifest.json`. "
        + (
            "`data/` holds the raw inputs as well as the cleaned data (published with `--include-raw`)."
            if raw
            else "`data/` holds the cleaned data the model was trained on (`cleaned-<stage>.jsonl`), not the raw "
            "inputs; `recipe.yaml` trains from it."
        ),
        "",
        "## Training",
        "",
    ]
    lines += [f"- {line}" for line in summary.training]
    if (run_dir / "report.md").is_file():
        lines += [
            "",
            "## Evaluation",
            "",
            "See `report/report.md` and `report/report.html` for the leaderboard "
            "of every variant, identity pass rates and plots.",
        ]
    lines += [
        "",
        "## Reproduce",
        "",
        "    pip install -r requirements.lock",
        "    openrecipe reproduce . --out rerun",
        "",
        "## Limitations",
        "",
        "A small model fine-tuned on a small, synthetic domain set: check the leaderboard before relying on "
        "it. Greedy outputs can differ across hardware and numeric precision.",
        "",
    ]
    return "\n".join(lines)
