"""What a bundle refuses to carry: no license, keys or tokens; what it rewrites: this machine's paths."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openrecipe.cli.main import app
from openrecipe.errors import OpenRecipeError
from openrecipe.publish.bundle import publish
from openrecipe.publish.sanitize import Machine, scan_secrets

runner = CliRunner()
FAKE_HF = "hf_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3h"


def finished_run(folder: Path, recipe: dict, report_md: str = "# report\n") -> Path:
    """A finished run with no stages: enough for publish to write a bundle around its report."""
    run = folder / "run"
    run.mkdir(parents=True)
    manifest = {"recipe": recipe, "recipe_dir": str(folder), "inputs": {}, "input_fields": []}
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "report.json").write_text(json.dumps({"recipe": recipe["name"], "status": "ok", "stages": []}))
    (run / "report.md").write_text(report_md)
    return run


def test_publish_refuses_a_recipe_without_a_license(tmp_path):
    run = finished_run(tmp_path, {"name": "x", "stages": []})
    result = runner.invoke(app, ["publish", str(run), "--out", str(tmp_path / "bundle")])
    assert result.exit_code == 2
    assert "no `license:`" in result.output and "license: apache-2.0" in result.output
    assert not (tmp_path / "bundle").exists()


def test_a_token_anywhere_refuses_the_bundle_naming_file_line_and_rule(tmp_path):
    run = finished_run(tmp_path, {"name": "x", "license": "mit", "stages": []}, f"# report\n\nHF_TOKEN={FAKE_HF}\n")
    with pytest.raises(OpenRecipeError) as caught:
        publish(run, tmp_path / "bundle")
    message = str(caught.value)
    assert "report/report.md:3: Hugging Face token" in message
    assert "report/report.md:3: environment key assignment" in message
    assert not (tmp_path / "bundle").exists() and not list(tmp_path.glob(".tmp-bundle-*"))


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        ("aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "AWS Access Key"),
        ("token: ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "GitHub Token"),
        ("slack xoxb-123456789012-123456789012-abcdefghijklmnopqrstuvwx", "Slack Token"),
        ("-----BEGIN OPENSSH PRIVATE KEY-----", "Private Key"),
        ("key sk-proj-" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5", "OpenAI-style key"),
        ("export OPENAI_API_KEY='abcdefghijklmnop1234'", "environment key assignment"),
    ],
)
def test_common_key_shapes_are_found(tmp_path, line, rule):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "notes.txt").write_text(f"fine\n{line}\n")
    assert any(f.file == "logs/notes.txt" and f.line == 2 and f.rule == rule for f in scan_secrets(tmp_path))


def test_ordinary_bundle_text_is_not_a_secret(tmp_path):
    (tmp_path / "SHA256SUMS").write_text("ab" * 32 + "  model.safetensors\n")
    (tmp_path / "tokenizer_config.json").write_text('{"pad_token": "<|endoftext|>", "model_max_length": 8192}\n')
    (tmp_path / "faq.jsonl").write_text('{"q": "How do I reset my password?", "a": "Use the API_KEY=<your key>"}\n')
    assert scan_secrets(tmp_path) == []


def test_this_machines_paths_and_user_are_rewritten(tmp_path):
    home = str(Path.home())
    report = f"# report\n\nmodel at {tmp_path}/run/sft/model\ncache {home}/.cache/x\nlog /var/lib/builder/job/out.log\n"
    run = finished_run(tmp_path, {"name": "x", "license": "apache-2.0", "stages": []}, report)
    info = publish(run, tmp_path / "bundle")
    text = (tmp_path / "bundle" / "report" / "report.md").read_text()
    assert "<run>/sft/model" in text and "~/.cache/x" in text and "<local>/out.log" in text
    assert home not in text.replace("~", "") and str(tmp_path) not in text
    assert "report/report.md" in info["rewritten"]
    manifest = (tmp_path / "bundle" / "manifest.json").read_text()
    assert str(tmp_path) not in manifest and '"recipe_dir": "<recipe>"' in manifest


def test_data_keeps_paths_that_are_content_and_user_names_of_system_accounts():
    machine = Machine((("/home/alice", "~"),), "alice")
    text = "Edit /etc/hosts as root; alice's files are in /home/alice/work"
    assert machine.rewrite(text, generic_paths=False) == "Edit /etc/hosts as root; alice's files are in ~/work"
    assert machine.rewrite(text, generic_paths=True) == "Edit /etc/hosts as root; <user>'s files are in ~/work"
    assert Machine((), "root").rewrite("the repository root", generic_paths=True) == "the repository root"


def test_the_base_models_hub_id(tmp_path):
    from openrecipe.publish.card import base_hub_id

    assert base_hub_id("default", None) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert base_hub_id("Qwen/Qwen2.5-0.5B", tmp_path) == "Qwen/Qwen2.5-0.5B"
    cached = tmp_path / "hub" / "models--Qwen--Qwen2.5-0.5B" / "snapshots" / "abc123"
    cached.mkdir(parents=True)
    assert base_hub_id(str(cached), None) == "Qwen/Qwen2.5-0.5B"
    (tmp_path / "mine").mkdir()
    assert base_hub_id("mine", tmp_path) is None


def test_a_relative_run_folder_is_rewritten_by_its_absolute_path_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    machine = Machine.here({Path("run"): "<run>"})
    text = f"a run wrote {tmp_path}/run/sft/model"
    assert machine.rewrite(text, generic_paths=False) == "a run wrote <run>/sft/model"


def test_embedded_images_and_urls_are_not_paths():
    machine = Machine((), None)
    text = '<img src="data:image/png;base64,iVBO+/9k/Qa//x+/w=="> see https://huggingface.co/a/b and <a href="/x/y">'
    assert machine.rewrite(text, generic_paths=True) == text.replace('"/x/y"', '"<local>/y"')
