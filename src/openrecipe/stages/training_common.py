"""Pieces the `sft` and `cpt` stages share: data references, running the loop, writing outputs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from openrecipe.config.base import StrictModel
from openrecipe.config.common import Identity
from openrecipe.config.references import DataReference, StageRef
from openrecipe.data.config import DataSource, FormatName
from openrecipe.data.load import open_source
from openrecipe.data.records import Record
from openrecipe.errors import OpenRecipeError
from openrecipe.models.refs import ModelRef
from openrecipe.stages.base import StageContext, StageResult
from openrecipe.train.batching import TrainData
from openrecipe.train.config import ProbeSettings, TrainSettings
from openrecipe.train.loop import TrainJob, train
from openrecipe.train.outputs import plot_loss, save_outputs


class DataRef(StrictModel):
    path: DataReference = Field(description="A data file, or stage:<id> for an earlier stage's data.jsonl")
    weight: float = Field(1.0, gt=0, description="Share of this source in the training mixture")
    name: str | None = None
    format: FormatName = "auto"
    text_field: str = "text"
    source: str | None = Field(
        None,
        description="Only rows a clean stage labelled with this source (e.g. identity, or a source's name), "
        "so one prepared file can feed several weighted parts of the mixture",
    )

    def label(self) -> str:
        if self.name:
            return self.name
        if self.source:
            return self.source
        return str(self.path)[len("stage:") :] if isinstance(self.path, StageRef) else Path(self.path.path).stem


def read_ref(context: StageContext, ref: DataRef) -> list[Record]:
    return list(stream_ref(context, ref))


def stream_ref(context: StageContext, ref: DataRef) -> Iterator[Record]:
    """The source's records one at a time (a corpus larger than memory is never a list)."""
    path = context.resolve_data(ref.path)
    source = DataSource(path=str(path), format=ref.format, text_field=ref.text_field)
    records = open_source(source, identity=context.identity, base_dir=context.recipe_dir).records
    if ref.source is None:
        yield from records
        return
    chosen, found = 0, set()
    for record in records:
        label = record.extra.get("source")
        if label == ref.source:
            chosen += 1
            yield record
        elif label is not None:
            found.add(str(label))
    if not chosen:
        fix = "point `path:` at a clean stage's output (stage:<id>)"
        raise OpenRecipeError(
            f"no rows of {ref.path} come from source {ref.source!r}",
            where=str(ref.path),
            fix=f"use one of: {', '.join(sorted(found))}" if found else fix,
        )


def labels_unique(refs: list[DataRef]) -> None:
    labels = [ref.label() for ref in refs]
    for label in labels:
        if labels.count(label) > 1:
            raise OpenRecipeError(f"two data sources are both called {label!r}", fix="give them distinct `name:`s")


def run_training(
    context: StageContext,
    reference: ModelRef,
    data: TrainData,
    settings: TrainSettings,
    title: str,
    *,
    system_prompt: str | None = None,
    identity: Identity | None = None,
    probes: ProbeSettings | None = None,
) -> StageResult:
    """Train, then write adapter/ and model/, the loss curve, and the metrics."""
    job = TrainJob(
        model=reference,
        data=data,
        settings=settings,
        out_dir=context.stage_dir,
        seed=context.seed,
        system_prompt=system_prompt,
        identity=identity,
        probes=probes,
        # The data fingerprint is part of the trajectory: a checkpoint made on other data is not resumed.
        data_fingerprint=data.fingerprint(),
        force=context.options.get("force", False),
        extend=context.options.get("extend", False),
        console=context.console,
    )
    outcome = train(job)
    artifacts = dict(outcome.artifacts)
    if outcome.model is not None:
        artifacts.update(
            save_outputs(
                outcome.model.model,
                outcome.model.tokenizer,
                context.stage_dir,
                method=job.settings.method,
                base_reference=_portable_reference(job.model),
                system_prompt=job.system_prompt,
                metadata={"stage": context.stage_dir.name},
            )
        )
        plot = plot_loss(context.stage_dir / "metrics.jsonl", context.stage_dir / "loss.png", title)
        if plot is not None:
            artifacts["loss_curve"] = str(plot)
    metrics = outcome.metrics
    context.console.print(
        f"  {metrics['steps']} steps in {metrics['train_seconds']:.1f} s of training"
        f" ({metrics.get('tokens_per_s', '-')} tok/s); loss {metrics.get('first_loss', 0):.3f} → "
        f"{metrics.get('final_loss', 0):.3f}; {metrics['stop_reason']}"
    )
    return StageResult(metrics=metrics, artifacts=artifacts)


def _portable_reference(reference: ModelRef) -> str:
    """Adapters record their base; keep `default` symbolic so a published adapter works on any machine."""
    if reference.kind == "default":
        return "default"
    return str(reference.path) if reference.path is not None else reference.name
