"""`publish`: a self-contained folder with the model card, recipe, data, lock file, logs, reports,
weights and GGUF — plus SHA256SUMS, so any later change to any file is detected and named."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from openrecipe.config.references import HubRef, PathRef, resolve_location
from openrecipe.errors import OpenRecipeError
from openrecipe.provenance.manifest import all_distributions
from openrecipe.provenance.records import REPORT, RunRecord, summarize
from openrecipe.utils.fs import atomic_directory
from openrecipe.utils.hashing import sha256_file

CHECKSUMS = "SHA256SUMS"
TRAINING_LOGS = ("metrics.jsonl", "loss.png", "probes.json", "report.json", "report.md")


def _load(run_dir: Path) -> tuple[dict[str, Any], RunRecord]:
    for name in ("manifest.json", REPORT):
        if not (run_dir / name).is_file():
            raise OpenRecipeError(
                f"{run_dir} has no {name}", fix="publish a folder written by `openrecipe run` that finished"
            )
    run = RunRecord.load(run_dir)
    if run.status != "ok":
        raise OpenRecipeError(
            f"the run in {run_dir} did not finish (status: {run.status})",
            fix="re-run it to completion first",
        )
    return json.loads((run_dir / "manifest.json").read_text()), run


def _rewrite_inputs(
    recipe: dict[str, Any], fields: list[dict[str, Any]], recipe_dir: Path | None, data_dir: Path
) -> dict[str, str]:
    """Copy every local input the run recorded as a path field into data/ and point the recipe at the
    copies; ids, kinds, descriptions and prompts are never touched, whatever folders happen to exist."""
    copied: dict[str, str] = {}
    for entry in fields:
        loc, value = tuple(entry["field"]), entry["value"]
        reference = HubRef(value) if entry["kind"] == "hub" else PathRef(value)
        path = resolve_location(reference, recipe_dir)
        if not isinstance(path, Path) or not path.exists():
            continue
        key = str(path.resolve())
        if key not in copied:
            name = path.name
            while (data_dir / name).exists():
                name = f"_{name}"
            if path.is_dir():
                shutil.copytree(path, data_dir / name, symlinks=False)
            else:
                shutil.copy2(path, data_dir / name)
            copied[key] = f"data/{name}"
        _set(recipe, loc, copied[key])
    return copied


def _set(tree: Any, loc: tuple[str | int, ...], value: str) -> None:
    for part in loc[:-1]:
        tree = tree[part]
    tree[loc[-1]] = value


def _model_card(manifest: dict[str, Any], run: RunRecord, run_dir: Path) -> str:
    recipe = manifest["recipe"]
    summary = summarize(run)
    metrics = []
    if summary.leaderboard:
        for row in summary.leaderboard["rows"]:
            for domain, cell in row["cells"].items():
                if "score" in cell:
                    metrics.append(
                        {"name": f"{row['variant']} {domain}", "type": "accuracy", "value": round(cell["score"], 4)}
                    )
    front = {
        "base_model": recipe.get("base_model", "default")
        if recipe.get("base_model", "default") != "default"
        else "HuggingFaceTB/SmolLM2-135M-Instruct",
        "license": "apache-2.0",
        "library_name": "transformers",
        "tags": ["openrecipe", "reproducible"],
        "datasets": sorted(Path(p).name for p in manifest.get("inputs", {})),
        "model-index": [
            {"name": recipe["name"], "results": [{"task": {"type": "text-generation"}, "metrics": metrics}]}
        ],
    }
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False, allow_unicode=True).strip(),
        "---",
        "",
        f"# {recipe['name']}",
        "",
        recipe.get("description", ""),
        "",
        "Built and published with openrecipe: everything needed to re-run and verify it is in this folder.",
        "",
        "## What was done",
        "",
    ]
    for stage in summary.stages:
        lines.append(f"- `{stage['id']}` ({stage['kind']}): {stage['status']}, {stage['seconds']:.0f} s")
    lines += ["", "## Data and cleaning", ""]
    lines += [f"- {line}" for line in summary.cleaning]
    lines += [
        "",
        "Input files (SHA-256) are listed in `manifest.json`; copies are in `data/`.",
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


def publish(run_dir: Path, out: Path) -> dict[str, Any]:
    manifest, run = _load(run_dir)
    if out.exists() and any(out.iterdir()):
        raise OpenRecipeError(f"{out} already exists and is not empty", fix="choose a new --out folder")
    recipe = copy.deepcopy(manifest["recipe"])
    recipe_dir = Path(manifest["recipe_dir"]) if manifest.get("recipe_dir") else None
    # A publish killed earlier left its temporary folder beside `out`: the same target, so ours to remove.
    for stale in out.parent.glob(f".tmp-{out.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    with atomic_directory(out, overwrite=out.exists()) as tmp:
        (tmp / "data").mkdir()
        copied = _rewrite_inputs(recipe, manifest.get("input_fields", []), recipe_dir, tmp / "data")
        (tmp / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True))
        (tmp / "requirements.lock").write_text("\n".join(all_distributions()) + "\n")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
        logs, reports = tmp / "logs", tmp / "report"
        logs.mkdir()
        reports.mkdir()
        for stage in run.stages:
            stage_dir = run_dir / stage.id
            for name in TRAINING_LOGS:
                if (stage_dir / name).is_file():
                    (logs / stage.id).mkdir(exist_ok=True)
                    shutil.copy2(stage_dir / name, logs / stage.id / name)
            if "data" in stage.artifacts and stage.kind == "clean":
                shutil.copy2(stage.path_of("data", run_dir), tmp / "data" / f"cleaned-{stage.id}.jsonl")
            for name, artifact in stage.artifacts.items():
                source = artifact.location(run_dir)
                if artifact.kind == "gguf" or name == "modelfile":
                    (tmp / "gguf").mkdir(exist_ok=True)
                    shutil.copy2(source, tmp / "gguf" / source.name)
        for name in (REPORT, "report.md", "report.html"):
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, reports / name)
        final = run.final_training_stage()
        if final is not None:
            shutil.copytree(final.path_of("model", run_dir), tmp / "model")
        (tmp / "README.md").write_text(_model_card(manifest, run, run_dir), encoding="utf-8")
        sums = [f"{sha256_file(p)}  {p.relative_to(tmp).as_posix()}" for p in sorted(tmp.rglob("*")) if p.is_file()]
        (tmp / CHECKSUMS).write_text("\n".join(sums) + "\n")
    return {
        "bundle": str(out),
        "files": len(sums),
        "inputs_copied": len(copied),
        "final_stage": final.id if final else None,
    }


def verify_bundle(bundle: Path) -> list[str]:
    """Names of files that were changed, removed or added since publishing (empty: untouched)."""
    sums_path = bundle / CHECKSUMS
    if not sums_path.is_file():
        raise OpenRecipeError(f"{bundle} has no {CHECKSUMS}", fix="pass a folder written by `openrecipe publish`")
    problems = unsafe_entries(bundle)
    expected = {}
    for line in sums_path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        if not PathRef(name).is_confined:
            problems.append(f"{name}: names a file outside the bundle")
            continue
        expected[name] = digest
    for name, digest in expected.items():
        path = bundle / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(path) != digest:
            problems.append(f"{name}: modified")
    for path in bundle.rglob("*"):
        name = path.relative_to(bundle).as_posix()
        if path.is_file() and name != CHECKSUMS and name not in expected:
            problems.append(f"{name}: added")
    return problems


def unsafe_entries(bundle: Path) -> list[str]:
    """Symbolic links (a bundle is plain files and folders: a link could lead a run outside it)."""
    found = []
    for root, folders, files in os.walk(bundle):
        for name in folders + files:
            path = Path(root) / name
            if path.is_symlink():
                found.append(f"{path.relative_to(bundle).as_posix()}: symbolic link (not allowed in a bundle)")
    return found


def push_to_hub(bundle: Path, repo: str) -> str:
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        raise OpenRecipeError("cannot push: HF_HUB_OFFLINE is set", fix="unset it and log in with `hf auth login`")
    api = HfApi()
    try:
        api.whoami(timeout=5)  # fails fast offline or without a token, before anything is uploaded
    except Exception as error:
        raise OpenRecipeError(
            f"cannot reach the Hugging Face Hub or not logged in ({type(error).__name__})",
            fix="check the network and run `hf auth login`; the bundle stays on disk",
        ) from None
    api.create_repo(repo, exist_ok=True)
    api.upload_folder(folder_path=str(bundle), repo_id=repo)
    return f"https://huggingface.co/{repo}"
