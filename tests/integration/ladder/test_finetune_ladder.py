"""A tiny fine-tuning ladder end to end: a clean stage prepared once, the sft stage run on rungs of data
fraction x LoRA rank with a learning-rate grid (and full fine-tuning beside it), every run a run folder,
one fixed held-out split, the L(D) fit, the verdicts, the transfer tables and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from openrecipe.errors import OpenRecipeError


def _recipe(tmp_path: Path, model_dir: Path, ladder: dict) -> Path:
    with open(tmp_path / "qa.jsonl", "w") as handle:
        for index in range(60):
            row = {
                "messages": [
                    {"role": "user", "content": f"What is the code of item {index}?"},
                    {"role": "assistant", "content": f"The code of item {index} is {index * 7 % 13}."},
                ]
            }
            handle.write(json.dumps(row) + "\n")
    recipe = {
        "name": "tiny-ft-ladder",
        "seed": 0,
        "base_model": str(model_dir),
        "ladder": ladder,
        "stages": [
            {
                "id": "data",
                "kind": "clean",
                "sources": [{"path": "qa.jsonl"}],
                "clean": {"near_dedup": False, "pii": False},
            },
            {
                "id": "sft",
                "kind": "sft",
                "data": [{"path": "stage:data"}],
                "tokenize": {"max_length": 64},
                "train": {"method": "lora", "lora": {"rank": 4, "alpha": 8}, "learning_rate": 1e-2, "batch_size": 8},
            },
        ],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


LADDER = {
    "kind": "finetune",
    "fractions": [0.25, 0.5, 1.0],
    "ranks": [2, 8],  # two ranks: the across-rank table and verdict
    "learning_rates": [1e-3, 1e-2, 1e-1],
    "full": {"learning_rates": [1e-3, 1e-2]},
    "epochs": 1,
    "heldout_fraction": 0.2,
    "noise_seeds": 1,
    "bootstrap": 10,
    "threads": 1,
}


def test_tiny_finetune_ladder(tmp_path, tiny_model_dir):
    from openrecipe.ladder.run import run_ladder

    out = tmp_path / "ladder"
    result = run_ladder(_recipe(tmp_path, tiny_model_dir, LADDER), [], out)
    assert result["kind"] == "finetune"
    runs = result["runs"]
    assert len(runs) == 3 * 2 * 3 + 2
    # Every run is a normal run folder with its report and manifest; the stage trained what was asked.
    for run in runs:
        folder = out / run["run"]
        report = json.loads((folder / "report.json").read_text())
        assert report["status"] == "ok" and (folder / "manifest.json").is_file()
        resolved = yaml.safe_load((folder / "recipe.resolved.yaml").read_text())
        train = resolved["stages"][0]["train"]
        assert train["learning_rate"] == run["learning_rate"] and train["method"] == run["method"]
        if run["method"] == "lora":
            assert train["lora"]["rank"] == run["rank"]
            assert (folder / "sft" / "adapter").is_dir()
        assert not (folder / "sft" / "model").exists()  # keep_models: false
    # Fractions are nested subsets; the held-out split is the same for all and never trained on.
    rows = {f: sorted(r["train_rows"] for r in runs if r["fraction"] == f)[0] for f in LADDER["fractions"]}
    assert rows[0.25] < rows[0.5] < rows[1.0]
    small = (out / "data" / "f0.25" / "data.jsonl").read_text().splitlines()
    large = (out / "data" / "f1" / "data.jsonl").read_text().splitlines()
    assert set(small) <= set(large)
    assert rows[1.0] + result["data"]["sources"][0]["heldout_rows"] == 60
    # More data at the best rate lowers held-out loss on this memorisable task, below the base model's.
    laws = {entry["rank"]: entry for entry in result["data_laws"]}
    assert laws[8]["fit"] is not None and laws[8]["fit"]["law"]["beta"] >= 0
    best = {(b["fraction"], b["rank"]): b for b in result["best"]}
    assert best[(1.0, 8)]["loss"] < result["base_eval_loss"]
    assert {b["grid"] for b in best.values()} <= set(LADDER["learning_rates"])
    verdicts = result["verdicts"]
    assert isinstance(verdicts["rank"]["moves"], bool) and "rank" in verdicts["rank"]["text"]
    assert "~10x" in verdicts["lora_vs_full"]["text"]
    assert result["noise"]["seed_std"] is not None and result["noise"]["band"] > 0
    adjacent = result["transfer"]["across_data"]["rank 2"]["adjacent"]
    assert [a["from"] for a in adjacent] == ["f0.25", "f0.5"] and "beyond_noise" in adjacent[0]
    assert "What we found" in (out / "ladder.md").read_text()
    assert "<img" in (out / "ladder.html").read_text()

    # A second run reuses every finished run folder (an interrupted ladder resumes) and agrees.
    again = run_ladder(_recipe(tmp_path, tiny_model_dir, LADDER), [], out)
    assert [r["eval_loss"] for r in again["runs"]] == [r["eval_loss"] for r in runs]


def test_ladder_stage_must_be_an_sft_stage(tmp_path, tiny_model_dir):
    from openrecipe.ladder.run import run_ladder

    with pytest.raises(OpenRecipeError, match="ladder.stage 'data' is not an sft stage") as error:
        run_ladder(_recipe(tmp_path, tiny_model_dir, {**LADDER, "stage": "data"}), [], tmp_path / "out")
    assert "sft" in error.value.fix
