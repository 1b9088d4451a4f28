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
from openrecipe.provenance.records import REPORT, RunRecord
from openrecipe.publish.card import base_hub_id, model_card
from openrecipe.publish.cleaned import clean_source_fields, cleaned_name, scrubbed_report, train_from_cleaned
from openrecipe.publish.sanitize import Machine, refuse_secrets, rewrite_machine_strings
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


def _license(manifest: dict[str, Any], run_dir: Path) -> str:
    license = manifest["recipe"].get("license")
    if not license:
        raise OpenRecipeError(
            f"the recipe of {run_dir} has no `license:`; a published model must say how it may be used",
            where="license",
            fix="add e.g. `license: apache-2.0` (it must allow what the base model's license allows) to the recipe "
            "and run it again (finished stages are cached), then publish",
        )
    return str(license)


def publish(run_dir: Path, out: Path, *, include_raw: bool = False, base_model_id: str | None = None) -> dict[str, Any]:
    """Without `include_raw`, the bundle holds the cleaned data and its recipe trains from it; the raw inputs
    clean stages read stay behind. Paths and the user name of this machine are rewritten; a key or token
    anywhere refuses the whole bundle (nothing is written). A ladder folder is published as a ladder."""
    from openrecipe.publish.ladder import is_ladder, publish_ladder

    if is_ladder(run_dir):
        return publish_ladder(run_dir, out)
    manifest, run = _load(run_dir)
    license = _license(manifest, run_dir)
    if out.exists() and any(out.iterdir()):
        raise OpenRecipeError(f"{out} already exists and is not empty", fix="choose a new --out folder")
    recipe = copy.deepcopy(manifest["recipe"])
    recipe_dir = Path(manifest["recipe_dir"]) if manifest.get("recipe_dir") else None
    base_id = base_model_id or base_hub_id(str(recipe.get("base_model", "default")), recipe_dir)
    # A publish killed earlier left its temporary folder beside `out`: the same target, so ours to remove.
    for stale in out.parent.glob(f".tmp-{out.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    with atomic_directory(out, overwrite=out.exists()) as tmp:
        (tmp / "data").mkdir()
        fields = manifest.get("input_fields", [])
        if not include_raw:
            raw = clean_source_fields(recipe)
            fields = [entry for entry in fields if tuple(entry["field"]) not in raw]
        copied = _rewrite_inputs(recipe, fields, recipe_dir, tmp / "data")
        if not include_raw:
            train_from_cleaned(recipe)
        (tmp / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True))
        (tmp / "requirements.lock").write_text("\n".join(all_distributions()) + "\n")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
        _copy_stage_outputs(run, run_dir, tmp, manifest["recipe"], include_raw=include_raw)
        for name in (REPORT, "report.md", "report.html"):
            if (run_dir / name).is_file():
                shutil.copy2(run_dir / name, tmp / "report" / name)
        final = run.final_training_stage()
        if final is not None:
            _copy_weights(final, run_dir, tmp, base_id)
        card = model_card(manifest, run, run_dir, license=license, base_model=base_id, raw=include_raw)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        rewritten, sums = seal(
            tmp, Machine.here({run_dir: "<run>", **({recipe_dir: "<recipe>"} if recipe_dir else {})})
        )
    return {
        "bundle": str(out),
        "files": len(sums),
        "inputs_copied": len(copied),
        "final_stage": final.id if final else None,
        "base_model": base_id,
        "rewritten": rewritten,
    }


def _copy_stage_outputs(run: RunRecord, run_dir: Path, tmp: Path, recipe: dict[str, Any], *, include_raw: bool) -> None:
    """Training logs, cleaned data (with its report's example rows scrubbed), GGUF files and the Modelfile."""
    (tmp / "logs").mkdir()
    (tmp / "report").mkdir()
    configs = {stage.get("id"): stage for stage in recipe.get("stages", [])}
    for stage in run.stages:
        stage_dir, logs = run_dir / stage.id, tmp / "logs" / stage.id
        for name in TRAINING_LOGS:
            if (stage_dir / name).is_file():
                logs.mkdir(exist_ok=True)
                shutil.copy2(stage_dir / name, logs / name)
        if "data" in stage.artifacts and stage.kind == "clean":
            shutil.copy2(stage.path_of("data", run_dir), tmp / cleaned_name(stage.id))
            if not include_raw and (stage_dir / "report.json").is_file():
                keep = configs.get(stage.id, {}).get("clean", {}).get("pii_keep_organization_contacts", [])
                as_json, as_markdown = scrubbed_report(stage_dir / "report.json", keep)
                (logs / "report.json").write_text(as_json, encoding="utf-8")
                (logs / "report.md").write_text(as_markdown, encoding="utf-8")
        for name, artifact in stage.artifacts.items():
            source = artifact.location(run_dir)
            if artifact.kind == "gguf" or name == "modelfile":
                (tmp / "gguf").mkdir(exist_ok=True)
                shutil.copy2(source, tmp / "gguf" / source.name)


def _copy_weights(final: Any, run_dir: Path, tmp: Path, base_id: str | None) -> None:
    """The merged model at the top level (`from_pretrained(repo_id)` loads it); a LoRA adapter in adapter/,
    naming its base by hub id so `PeftModel.from_pretrained` works on any machine."""
    model = final.path_of("model", run_dir)
    for path in sorted(model.iterdir()):
        if path.is_file():
            shutil.copy2(path, tmp / path.name)
    if "adapter" not in final.artifacts:
        return
    adapter = tmp / "adapter"
    shutil.copytree(final.path_of("adapter", run_dir), adapter, symlinks=False)
    config_path = adapter / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_id or Path(str(config.get("base_model_name_or_path"))).name
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")


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


def push_to_hub(bundle: Path, repo: str, *, public: bool = False, api: Any = None) -> str:
    """Upload the bundle as it is on disk (weights at the top level); the repository is private unless
    `public`. `api` is a `huggingface_hub.HfApi` (made here when not given)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise OpenRecipeError("cannot push: HF_HUB_OFFLINE is set", fix="unset it and log in with `hf auth login`")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    try:
        api.whoami()  # fails fast offline or without a token, before anything is uploaded
    except Exception as error:
        raise OpenRecipeError(
            f"cannot reach the Hugging Face Hub or not logged in ({type(error).__name__})",
            fix="check the network and run `hf auth login`; the bundle stays on disk",
        ) from None
    api.create_repo(repo, repo_type="model", private=not public, exist_ok=True)
    api.upload_folder(
        folder_path=str(bundle), repo_id=repo, repo_type="model", commit_message="Publish with openrecipe"
    )
    return f"https://huggingface.co/{repo}"


def seal(tmp: Path, machine: Machine) -> tuple[int, list[str]]:
    """The last step of every bundle: this machine's paths rewritten, secrets refused, checksums written."""
    rewritten = rewrite_machine_strings(tmp, machine)
    refuse_secrets(tmp)
    sums = [f"{sha256_file(p)}  {p.relative_to(tmp).as_posix()}" for p in sorted(tmp.rglob("*")) if p.is_file()]
    (tmp / CHECKSUMS).write_text("\n".join(sums) + "\n")
    return rewritten, sums
