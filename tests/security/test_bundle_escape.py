"""Hostile bundles: `reproduce` refuses them with exit 2 and writes nothing outside --out."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from openrecipe.cli.main import app

runner = CliRunner()


def snapshot(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def make_bundle(folder: Path, recipe: dict | str) -> Path:
    """A bundle as an attacker would make it: any recipe, with SHA256SUMS regenerated to match."""
    bundle = folder / "bundle"
    (bundle / "data").mkdir(parents=True)
    (bundle / "report").mkdir()
    (bundle / "data" / "prompts.jsonl").write_text('{"prompt": "hi"}\n')
    (bundle / "report" / "report.json").write_text(json.dumps({"recipe": "x", "status": "ok", "stages": []}))
    text = recipe if isinstance(recipe, str) else yaml.safe_dump(recipe)
    (bundle / "recipe.yaml").write_text(text)
    seal(bundle)
    return bundle


def seal(bundle: Path) -> None:
    sums = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(bundle).as_posix()}"
        for p in sorted(bundle.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.name != "SHA256SUMS"
    ]
    (bundle / "SHA256SUMS").write_text("\n".join(sums) + "\n")


def reproduce(tmp_path: Path, bundle: Path):
    before = snapshot(tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(app, ["reproduce", str(bundle), "--out", str(out)])
    after = snapshot(tmp_path)
    outside = {name for name in after - before if not name.startswith("out/") and name != "out"}
    return result, outside


def stage(**fields) -> dict:
    return {"name": "evil", "stages": [fields]}


@pytest.mark.parametrize(
    ("recipe", "words"),
    [
        (stage(id="e", kind="export", name="../../../ESCAPED"), "stages[e].name"),
        (stage(id="e", kind="export", name="/tmp/ESCAPED"), "stages[e].name"),
        (stage(id="g", kind="generate", input="/etc/hostname"), "leaves the bundle"),
        (stage(id="g", kind="generate", input="../../outside.jsonl"), "leaves the bundle"),
        (stage(id="g", kind="generate", input="~/prompts.jsonl"), "leaves the bundle"),
        (
            stage(id="c", kind="clean", sources=[{"path": "data/../../../etc/passwd"}]),
            "leaves the bundle",
        ),
        ({"name": "evil", "base_model": "/opt/model", "stages": []}, "leaves the bundle"),
        (stage(id="../x", kind="generate", prompts=["hi"]), "stages[../x].id"),
        ({"name": "../evil", "stages": []}, "name"),
    ],
    ids=[
        "export-name-traversal",
        "export-name-absolute",
        "absolute-input",
        "dotdot-input",
        "home-input",
        "clean-source-traversal",
        "absolute-base-model",
        "stage-id-traversal",
        "recipe-name-traversal",
    ],
)
def test_unsafe_paths_are_refused_before_anything_runs(tmp_path, recipe, words):
    bundle = make_bundle(tmp_path, recipe)
    result, outside = reproduce(tmp_path, bundle)
    assert result.exit_code == 2, result.output
    assert words in " ".join(result.output.split())
    assert not outside
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_symlink_to_a_directory_is_refused(tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("do not read")
    bundle = make_bundle(tmp_path, stage(id="c", kind="clean", sources=[{"path": "data/linked"}]))
    os.symlink(secret, bundle / "data" / "linked")
    seal(bundle)
    result, outside = reproduce(tmp_path, bundle)
    assert result.exit_code == 2, result.output
    assert "data/linked: symbolic link" in result.output
    assert not outside


def test_symlinked_file_is_refused_by_verify(tmp_path):
    bundle = make_bundle(tmp_path, stage(id="g", kind="generate", input="data/prompts.jsonl"))
    (bundle / "data" / "prompts.jsonl").unlink()
    os.symlink("/etc/hostname", bundle / "data" / "prompts.jsonl")
    result, outside = reproduce(tmp_path, bundle)
    assert result.exit_code == 2 and "symbolic link" in result.output
    assert not outside


def test_checksum_names_outside_the_bundle_are_reported(tmp_path):
    from openrecipe.publish.bundle import verify_bundle

    bundle = make_bundle(tmp_path, stage(id="g", kind="generate", prompts=["hi"]))
    with open(bundle / "SHA256SUMS", "a") as handle:
        handle.write(f"{'0' * 64}  ../outside.txt\n")
    assert any("outside the bundle" in problem for problem in verify_bundle(bundle))


def test_confined_run_cannot_read_through_a_link_made_after_validation(tmp_path):
    """The run itself checks that every path resolves inside the bundle, links included."""
    from openrecipe.config.references import PathRef
    from openrecipe.errors import OpenRecipeError
    from openrecipe.stages.base import StageContext

    bundle = tmp_path / "bundle"
    (bundle / "data").mkdir(parents=True)
    os.symlink("/etc", bundle / "data" / "etc")
    context = StageContext(
        run_dir=tmp_path / "out",
        stage_dir=tmp_path / "out" / "s",
        seed=0,
        base_model="default",
        system_prompt=None,
        identity=None,
        results={},
        recipe_dir=bundle,
        options={"confined": True},
    )
    assert context.resolve_path(PathRef("data/x.jsonl")) == bundle / "data" / "x.jsonl"
    with pytest.raises(OpenRecipeError, match="outside the bundle"):
        context.resolve_path(PathRef("data/etc/hostname"))


ALIAS_BOMB = """name: bomb
a: &a ["x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: [*e,*e,*e,*e,*e,*e,*e,*e,*e]
stages: []
"""


def test_alias_bomb_recipe_is_a_user_error(tmp_path):
    bundle = make_bundle(tmp_path, ALIAS_BOMB)
    result, outside = reproduce(tmp_path, bundle)
    assert result.exit_code == 2 and "alias" in result.output.lower()
    assert not outside
