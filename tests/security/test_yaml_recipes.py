"""Hostile YAML: alias bombs, recursive aliases, code-running tags and huge or deep files are user errors
(exit 2) found before anything large is built."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openrecipe.cli.main import app
from openrecipe.config.loading import MAX_YAML_BYTES, apply_overrides, load_yaml_with_lines
from openrecipe.errors import OpenRecipeError


def alias_bomb(levels: int = 9) -> str:
    """The classic 'billion laughs': each level lists the previous one nine times (9^levels leaves)."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        refs = ",".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_alias_bomb_is_refused_in_bounded_memory(tmp_path):
    path = write(tmp_path, alias_bomb())
    assert path.stat().st_size < 600
    tracemalloc.start()
    try:
        with pytest.raises(OpenRecipeError, match=r"recipe.yaml:\d+: YAML aliases expand to more than"):
            load_yaml_with_lines(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20


def test_small_aliases_still_work(tmp_path):
    text = "defaults: &d {rank: 8, alpha: 16}\nlora: *d\nmerged:\n  <<: *d\n  rank: 4\n"
    data, lines = load_yaml_with_lines(write(tmp_path, text))
    assert data["lora"] == {"rank": 8, "alpha": 16}
    assert data["merged"] == {"rank": 4, "alpha": 16}
    assert lines[("merged", "rank")] == 5


def test_recursive_alias_is_refused(tmp_path):
    with pytest.raises(OpenRecipeError, match="alias refers to itself"):
        load_yaml_with_lines(write(tmp_path, "a: &a [1, *a]\n"))


@pytest.mark.parametrize(
    "text",
    [
        "name: !!python/object/apply:os.system ['touch PWNED']\n",
        "name: !!python/name:os.system\n",
        "stages: !custom {a: 1}\n",
    ],
)
def test_code_tags_are_user_errors_and_never_run(tmp_path, monkeypatch, text):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OpenRecipeError, match=r"recipe.yaml:1: YAML tag .* is not allowed"):
        load_yaml_with_lines(write(tmp_path, text))
    assert not (tmp_path / "PWNED").exists()


def test_deep_nesting_and_huge_files_are_user_errors(tmp_path):
    with pytest.raises(OpenRecipeError, match="YAML"):
        load_yaml_with_lines(write(tmp_path, "a: " + "[" * 100_000 + "]" * 100_000 + "\n"))
    big = tmp_path / "big.yaml"
    with open(big, "wb") as handle:
        handle.truncate(MAX_YAML_BYTES + 1)
    with pytest.raises(OpenRecipeError, match="larger than"):
        load_yaml_with_lines(big)


def test_override_values_are_bounded_too():
    bomb = "[" + ",".join(["&x [1,1,1,1,1,1,1,1,1]"] + ["*x"] * 8) + "]"
    assert apply_overrides({}, [f"a={bomb}"])["a"][1] == [1] * 9  # small aliases are fine
    nested = alias_bomb().replace("\n", ", ").rstrip(", ")
    with pytest.raises(OpenRecipeError, match="aliases expand"):
        apply_overrides({}, ["a={" + nested + "}"])
    with pytest.raises(OpenRecipeError, match="not allowed"):
        apply_overrides({}, ["a=!!python/object/apply:os.system [id]"])


@pytest.mark.parametrize("text", [alias_bomb(), "name: !!python/object/apply:os.system ['id']\n", "a: &a [*a]\n"])
def test_cli_exits_2_without_a_traceback(tmp_path, text):
    result = CliRunner().invoke(app, ["validate", str(write(tmp_path, text))])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
