"""A bundle trains from the cleaned data, not the raw inputs: its recipe drops the clean stages and reads
their published output instead, under the same source labels (so mixtures and weights are unchanged)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openrecipe.config.references import STAGE_REF_PREFIX
from openrecipe.data.clean import CleanReport, scrub_pii
from openrecipe.data.prepare import render_markdown


def cleaned_name(stage_id: str) -> str:
    return f"data/cleaned-{stage_id}.jsonl"


def clean_source_fields(recipe: dict[str, Any]) -> set[tuple[Any, ...]]:
    """Field locations of the raw inputs clean stages read (what a bundle leaves out): the files and their
    review patches (which hold the original cell values)."""
    return {
        ("stages", index, "sources", number, field)
        for index, stage in enumerate(recipe.get("stages", []))
        if stage.get("kind") == "clean"
        for number in range(len(stage.get("sources", [])))
        for field in ("path", "review")
    }


def train_from_cleaned(recipe: dict[str, Any]) -> list[str]:
    """Drop the clean stages and point every reference to their data at the published cleaned file."""
    clean_ids = [stage["id"] for stage in recipe.get("stages", []) if stage.get("kind") == "clean"]
    recipe["stages"] = [stage for stage in recipe.get("stages", []) if stage.get("kind") != "clean"]
    for stage in recipe["stages"]:
        _replace(stage, set(clean_ids))
    return clean_ids


def _clean_id(value: Any, clean_ids: set[str]) -> str | None:
    if not isinstance(value, str) or not value.startswith(STAGE_REF_PREFIX):
        return None
    stage_id, _, artifact = value[len(STAGE_REF_PREFIX) :].partition("/")
    return stage_id if stage_id in clean_ids and artifact in ("", "data") else None


def _replace(tree: Any, clean_ids: set[str]) -> Any:
    if isinstance(tree, dict):
        stage_id = _clean_id(tree.get("path"), clean_ids)
        if stage_id is not None:
            tree["path"] = cleaned_name(stage_id)
            if not tree.get("name") and not tree.get("source"):
                tree["name"] = stage_id  # the label `stage:<id>` had, which keys the training mixture
        for key, value in tree.items():
            tree[key] = _replace(value, clean_ids)
        return tree
    if isinstance(tree, list):
        return [_replace(item, clean_ids) for item in tree]
    stage_id = _clean_id(tree, clean_ids)
    return cleaned_name(stage_id) if stage_id is not None else tree


def scrubbed_report(report_path: Path, keep: list[str]) -> tuple[str, str]:
    """A clean stage's report (JSON, Markdown) with the example rows' PII replaced: examples of duplicates
    and length failures quote rows as they were read."""
    summary = json.loads(report_path.read_text(encoding="utf-8"))
    clean = summary.get("clean", {})
    for examples in clean.get("examples", {}).values():
        for example in examples:
            example["text"] = scrub_pii(example.get("text", ""), set(keep))[0]
    report = CleanReport(
        rows_in=clean.get("rows_in", 0),
        rows_out=clean.get("rows_out", 0),
        removed=clean.get("removed", {}),
        modified=clean.get("modified", {}),
        examples=clean.get("examples", {}),
    )
    markdown = render_markdown(summary.get("sources", {}), report, summary.get("seconds"))
    return json.dumps(summary, indent=1, ensure_ascii=False), markdown


def pii_counts(run_stages: list[Any]) -> dict[str, dict[str, int]]:
    """What each clean stage replaced, by rule: the raw inputs still hold all of it."""
    counts = {}
    for stage in run_stages:
        if stage.kind == "clean":
            modified = stage.metrics.get("modified", {})
            counts[stage.id] = {rule: count for rule, count in modified.items() if rule.startswith("pii_")}
    return counts
