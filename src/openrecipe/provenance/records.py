"""Typed records of a run: what each stage did and produced (kind, path, bytes, SHA-256 of every
artifact). The runner writes them; the report, publish and reproduce only read them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrecipe.utils.hashing import cached_sha256_file, sha256_json, sha256_tree

TRAINING_KINDS = ("sft", "cpt")


def artifact_bytes(path: Path) -> int:
    """An artifact's size: the file, or every file in the folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def artifact_sha256(path: Path) -> str:
    """One digest per artifact: the file's, or one over the folder's (relative name, digest) pairs."""
    return cached_sha256_file(path) if path.is_file() else sha256_json(sha256_tree(path, cached=True))


def stat_fingerprint(path: Path) -> str:
    """Cheap change detector: names, sizes and modification times of every file."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return sha256_json([[p.name if p == path else p.relative_to(path).as_posix(), *_stat(p)] for p in files])


def _stat(path: Path) -> list[int]:
    info = path.stat()
    return [info.st_size, info.st_mtime_ns]


@dataclass
class ArtifactRecord:
    kind: str
    path: str  # relative to the run folder when inside it
    bytes: int
    sha256: str
    stat: str = ""

    @classmethod
    def measure(cls, kind: str, path: Path, run_dir: Path) -> ArtifactRecord:
        return cls(
            kind, relative_to_run(path, run_dir), artifact_bytes(path), artifact_sha256(path), stat_fingerprint(path)
        )

    def location(self, run_dir: Path) -> Path:
        return run_dir / self.path

    def unchanged(self, run_dir: Path) -> bool:
        """Size and modification times first; the hash decides when they differ."""
        target = self.location(run_dir)
        if not target.exists():
            return False
        if self.stat and stat_fingerprint(target) == self.stat:
            return True
        return artifact_bytes(target) == self.bytes and artifact_sha256(target) == self.sha256

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "bytes": self.bytes, "sha256": self.sha256, "stat": self.stat}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ArtifactRecord:
        return cls(data["kind"], data["path"], int(data["bytes"]), data["sha256"], data.get("stat", ""))


@dataclass
class StageRecord:
    id: str
    kind: str
    status: str = "running"  # running, ok, cached, failed
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, ArtifactRecord] = field(default_factory=dict)
    key: str | None = None
    error: str | None = None
    traceback: str | None = None

    def path_of(self, name: str, run_dir: Path) -> Path:
        return self.artifacts[name].location(run_dir)

    def to_json(self) -> dict[str, Any]:
        """The report.json entry: `artifacts` maps names to run-relative paths, `files` holds the rest."""
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "status": self.status}
        if self.status != "running":
            out["seconds"] = self.seconds
        if self.status in ("ok", "cached"):
            out["metrics"] = self.metrics
            out["artifacts"] = {name: record.path for name, record in self.artifacts.items()}
            out["files"] = {
                name: {"kind": r.kind, "bytes": r.bytes, "sha256": r.sha256} for name, r in self.artifacts.items()
            }
        if self.error is not None:
            out["error"] = self.error
        if self.traceback is not None:
            out["traceback"] = self.traceback
        return out

    def to_cache_json(self) -> dict[str, Any]:
        """The stage folder's own record (written last, after every artifact is in place)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "key": self.key,
            "seconds": self.seconds,
            "metrics": self.metrics,
            "artifacts": {name: record.to_json() for name, record in self.artifacts.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageRecord:
        files = data.get("files", {})
        artifacts = {}
        for name, value in data.get("artifacts", {}).items():
            if isinstance(value, dict):
                artifacts[name] = ArtifactRecord.from_json(value)
            else:
                info = files.get(name, {})
                artifacts[name] = ArtifactRecord(
                    info.get("kind", "file"), value, info.get("bytes", 0), info.get("sha256", "")
                )
        return cls(
            id=data["id"],
            kind=data["kind"],
            status=data.get("status", "ok"),
            seconds=float(data.get("seconds", 0.0)),
            metrics=data.get("metrics", {}),
            artifacts=artifacts,
            key=data.get("key"),
            error=data.get("error"),
            traceback=data.get("traceback"),
        )


@dataclass
class RunRecord:
    recipe: str
    run_dir: Path
    status: str = "running"
    seconds: float = 0.0
    stages: list[StageRecord] = field(default_factory=list)

    def stage(self, stage_id: str) -> StageRecord | None:
        return next((stage for stage in self.stages if stage.id == stage_id), None)

    def final_training_stage(self) -> StageRecord | None:
        """The last sft/cpt stage that produced a model: what a bundle ships and the report points at."""
        return next(
            (s for s in reversed(self.stages) if s.kind in TRAINING_KINDS and "model" in s.artifacts),
            None,
        )

    def leaderboards(self) -> dict[str, Any]:
        return {s.id: s.metrics["leaderboard"] for s in self.stages if "leaderboard" in s.metrics}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"recipe": self.recipe, "run_dir": str(self.run_dir), "status": self.status}
        if self.status != "running":
            out["seconds"] = self.seconds
        out["stages"] = [stage.to_json() for stage in self.stages]
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], run_dir: Path | None = None) -> RunRecord:
        return cls(
            recipe=data.get("recipe", ""),
            run_dir=run_dir if run_dir is not None else Path(data.get("run_dir", ".")),
            status=data.get("status", "?"),
            seconds=float(data.get("seconds", 0.0)),
            stages=[StageRecord.from_json(stage) for stage in data.get("stages", [])],
        )

    @classmethod
    def load(cls, run_dir: Path) -> RunRecord:
        return cls.load_file(run_dir / REPORT, run_dir)

    @classmethod
    def load_file(cls, path: Path, run_dir: Path) -> RunRecord:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")), run_dir)


REPORT = "report.json"


def relative_to_run(path: Path, run_dir: Path) -> str:
    try:
        return path.resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return str(path)


@dataclass
class RunSummary:
    """What a reader of the run wants first, built in one place for the report and the model card."""

    stages: list[dict[str, Any]]
    cleaning: list[str]
    training: list[str]
    continued_pretraining: list[str]
    leaderboard: dict[str, Any] | None
    versus_baseline: list[dict[str, Any]]
    final_training: StageRecord | None
    train_seconds: float


def hand_edits(label: str, review: dict[str, Any]) -> str:
    """One line for a source's review patch, as the clean stage counted it."""
    return (
        f"{label}: hand edits from {review['patch']} (SHA-256 {review['patch_sha256'][:12]}): "
        f"{review['edited_cells']} cells in {review['edited_rows']} rows edited, "
        f"{review['flagged_removed']} flagged rows and {review['duplicates_removed']} duplicates removed, "
        f"PII replacements {review['pii_accepted']} accepted / {review['pii_rejected']} rejected"
    )


def summarize(run: RunRecord) -> RunSummary:
    cleaning, training, cpt = [], [], []
    leaderboard, versus = None, []
    for stage in run.stages:
        m = stage.metrics
        if stage.kind == "clean" and "rows_in" in m:
            removed = ", ".join(f"{k} {v}" for k, v in m.get("removed", {}).items()) or "nothing"
            cleaning.append(f"{stage.id}: {m['rows_in']} rows in, {m['rows_out']} out (removed: {removed})")
            cleaning += [f"{stage.id}: {hand_edits(label, review)}" for label, review in m.get("review", {}).items()]
        if stage.kind in TRAINING_KINDS and "train_seconds" in m:
            training.append(
                f"{stage.id}: {m['steps']} steps, {m['train_seconds']:.0f} s, loss "
                f"{m.get('first_loss', 0):.3f} → {m.get('final_loss', 0):.3f} ({m.get('stop_reason')})"
            )
        if stage.kind == "cpt" and "perplexity" in m:
            parts = [f"{stage.id}: replay {m.get('replay_ratio', 0):.0%}"]
            for key, label in (("domain_perplexity", "domain"), ("general_perplexity", "general (forgetting)")):
                if key in m["perplexity"]:
                    row = m["perplexity"][key]
                    parts.append(
                        f"{label} perplexity {row['before']:.2f} → {row['after']:.2f} ({row['change_pct']:+.1f}%)"
                    )
            cpt.append("; ".join(parts))
        if stage.kind == "eval" and "leaderboard" in m:
            leaderboard, versus = m["leaderboard"], m.get("versus_baseline") or []
    return RunSummary(
        stages=[{"id": s.id, "kind": s.kind, "status": s.status, "seconds": s.seconds} for s in run.stages],
        cleaning=cleaning,
        training=training,
        continued_pretraining=cpt,
        leaderboard=leaderboard,
        versus_baseline=versus,
        final_training=run.final_training_stage(),
        train_seconds=sum(s.metrics.get("train_seconds", 0) for s in run.stages if s.kind in TRAINING_KINDS),
    )
