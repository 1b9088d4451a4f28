"""`--push-to-hub`: private unless --public, the bundle folder uploaded as it is (weights at the top level).
The Hub is replaced at the boundary by a recorder of the calls `push_to_hub` makes."""

from pathlib import Path

import pytest

from openrecipe.errors import OpenRecipeError
from openrecipe.publish.bundle import push_to_hub


class RecordingApi:
    def __init__(self, logged_in: bool = True) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.logged_in = logged_in

    def whoami(self, **kwargs):
        self.calls.append(("whoami", kwargs))
        if not self.logged_in:
            raise OSError("no token")
        return {"name": "someone"}

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs):
        kwargs["files"] = sorted(
            p.relative_to(kwargs["folder_path"]).as_posix() for p in Path(kwargs["folder_path"]).rglob("*")
        )
        self.calls.append(("upload_folder", kwargs))


def bundle(tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    (folder / "gguf").mkdir(parents=True)
    for name in ("README.md", "config.json", "model.safetensors", "SHA256SUMS", "gguf/m-q4_k_m.gguf"):
        (folder / name).write_text("x")
    return folder


def test_private_by_default_and_the_layout_is_uploaded_as_is(tmp_path):
    api = RecordingApi()
    url = push_to_hub(bundle(tmp_path), "me/model", api=api)
    assert url == "https://huggingface.co/me/model"
    calls = dict(api.calls)
    assert calls["create_repo"]["private"] is True and calls["create_repo"]["repo_id"] == "me/model"
    upload = calls["upload_folder"]
    assert upload["repo_id"] == "me/model" and "path_in_repo" not in upload
    assert {"config.json", "model.safetensors", "README.md", "gguf/m-q4_k_m.gguf"} <= set(upload["files"])


def test_public_only_when_asked(tmp_path):
    api = RecordingApi()
    push_to_hub(bundle(tmp_path), "me/model", public=True, api=api)
    assert dict(api.calls)["create_repo"]["private"] is False


def test_nothing_is_created_without_a_login(tmp_path):
    api = RecordingApi(logged_in=False)
    with pytest.raises(OpenRecipeError, match="not logged in"):
        push_to_hub(bundle(tmp_path), "me/model", api=api)
    assert [name for name, _ in api.calls] == ["whoami"]


@pytest.mark.parametrize(("flags", "private"), [([], True), (["--public"], False)])
def test_the_cli_pushes_the_bundle_it_wrote(tmp_path, monkeypatch, flags, private):
    import huggingface_hub
    from tests.unit.publish.test_bundle_safety import finished_run
    from typer.testing import CliRunner

    from openrecipe.cli.main import app

    api = RecordingApi()
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: api)
    run = finished_run(tmp_path, {"name": "x", "license": "mit", "stages": []})
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["publish", str(run), "--out", str(out), "--push-to-hub", "me/x", *flags])
    assert result.exit_code == 0, result.output
    assert dict(api.calls)["create_repo"]["private"] is private
    assert dict(api.calls)["upload_folder"]["folder_path"] == str(out)
    assert ("public" if not private else "private") in result.output
