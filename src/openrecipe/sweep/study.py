"""A sweep: an Optuna study over recipe settings, worked on by one or more processes (or machines).

The study's settings (space, seeds, metric, recipe) are stored in the study itself, so `--join STUDY`
on another machine needs only the storage. Re-running the same command continues the study: completed
and pruned trials count toward `trials`, a trial whose worker died is failed by the heartbeat and retried.
"""

from __future__ import annotations

import itertools
import multiprocessing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrecipe.errors import OpenRecipeError
from openrecipe.sweep.config import SweepSettings
from openrecipe.sweep.space import Dimension, overrides_for, parse_space
from openrecipe.sweep.trial import Pruned, TrialPlan, run_trial

SETTINGS_ATTR = "openrecipe:sweep"
MAX_CONSECUTIVE_FAILURES = 3


@dataclass
class SweepJob:
    """Everything a worker process needs (picklable, so `spawn` workers can receive it)."""

    recipe: Path
    overrides: list[str]
    sweep_dir: Path
    settings: SweepSettings
    study_name: str
    base_seed: int
    worker_index: int = 0

    @property
    def storage_url(self) -> str:
        return self.settings.storage or str(self.sweep_dir / "study.journal")

    def dimensions(self) -> list[Dimension]:
        return parse_space(self.settings.space, self.settings.stage)


def open_study(job: SweepJob, *, create: bool):
    import optuna

    from openrecipe.sweep.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Heartbeat retries and constant_liar are marked experimental in Optuna; we rely on them on purpose.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    settings = job.settings
    storage = open_storage(
        job.storage_url, interval=settings.heartbeat_seconds, grace=settings.grace, max_retries=settings.max_retries
    )
    if not create:
        try:
            return optuna.load_study(
                study_name=job.study_name, storage=storage, sampler=_sampler(job), pruner=_pruner(settings)
            )
        except KeyError:
            raise OpenRecipeError(
                f"no study {job.study_name!r} in {job.storage_url}",
                fix="start it first with `openrecipe sweep RECIPE --space ...`, or check --storage",
            ) from None
    return optuna.create_study(
        study_name=job.study_name,
        storage=storage,
        direction=settings.direction,
        sampler=_sampler(job),
        pruner=_pruner(settings),
        load_if_exists=True,
    )


def _sampler(job: SweepJob):
    import optuna

    seed = job.base_seed + 1000 * job.worker_index  # workers must not propose the same points
    if job.settings.sampler == "grid":
        return optuna.samplers.GridSampler({d.path: d.grid_values() for d in job.dimensions()}, seed=seed)
    if job.settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant_liar is marked experimental
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _pruner(settings: SweepSettings):
    import optuna

    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def finished_count(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def work(job: SweepJob) -> None:
    """One worker: take trials from the study until it holds `trials` completed or pruned ones."""
    import optuna
    from optuna.trial import TrialState

    study = open_study(job, create=False)
    dimensions = job.dimensions()
    plan = TrialPlan(
        recipe=job.recipe,
        overrides=job.overrides,
        sweep_dir=job.sweep_dir,
        stage=job.settings.stage,
        metric=job.settings.metric,
        seeds=job.settings.seeds,
        base_seed=job.base_seed,
    )
    failures = [0]

    def objective(trial: optuna.Trial) -> float:
        params = {d.path: d.suggest(trial) for d in dimensions}
        trial.set_user_attr("worker", job.worker_index)
        try:
            value, _ = run_trial(plan, trial, overrides_for(params))
        except Pruned as pruned:
            raise optuna.TrialPruned(str(pruned)) from None
        except Exception as error:
            trial.set_user_attr("error", str(error)[-500:])
            raise
        return value

    def stop_when_done(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        failures[0] = failures[0] + 1 if trial.state == TrialState.FAIL else 0
        # Trials other workers are running count too: no worker starts one the study does not need.
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if finished_count(study) + running >= job.settings.trials or failures[0] >= MAX_CONSECUTIVE_FAILURES:
            study.stop()

    if finished_count(study) >= job.settings.trials:
        return
    study.optimize(objective, callbacks=[stop_when_done], catch=(Exception,))
    if failures[0] >= MAX_CONSECUTIVE_FAILURES:
        last = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))[-1]
        raise OpenRecipeError(
            f"{MAX_CONSECUTIVE_FAILURES} trials in a row failed; the last one: {last.user_attrs.get('error')}",
            where=str(job.sweep_dir / "trials" / f"{last.number:04d}" / "run.log"),
            fix="read that log; fix the recipe or narrow the search space, then re-run to continue",
        )


def _work_quietly(job: SweepJob) -> None:
    """Entry point of a spawned worker process."""
    from openrecipe.cli.quiet import quiet_libraries

    quiet_libraries()
    work(job)


def start_study(job: SweepJob) -> None:
    """Create (or reopen) the study and record its settings so workers that `--join` agree on them."""
    study = open_study(job, create=True)
    recorded = study.user_attrs.get(SETTINGS_ATTR)
    current = {
        "recipe": str(job.recipe),
        "overrides": job.overrides,
        "base_seed": job.base_seed,
        "settings": job.settings.model_dump(mode="json", exclude={"workers", "storage", "study"}),
    }
    if recorded is None:
        study.set_user_attr(SETTINGS_ATTR, current)
        if job.settings.sampler == "grid":
            # Queued points are popped atomically by one worker each, so concurrent workers never pick
            # the same grid point (Optuna's GridSampler alone can, when two ask at the same moment).
            dimensions = job.dimensions()
            for values in itertools.product(*(d.grid_values() for d in dimensions)):
                study.enqueue_trial(dict(zip((d.path for d in dimensions), values, strict=True)))
    elif recorded["settings"]["space"] != current["settings"]["space"]:
        raise OpenRecipeError(
            f"study {job.study_name!r} already searches another space: {recorded['settings']['space']}",
            fix="use a new --out folder or --study name, or repeat the same --space options",
        )
    else:  # the trial count may grow between runs: `--trials 20` after 10 continues the study
        study.set_user_attr(SETTINGS_ATTR, current)
    from openrecipe.sweep.storage import fail_stale

    fail_stale(study)


def joined_job(storage: str, study_name: str, sweep_dir: Path, workers: int) -> SweepJob:
    """The job of an existing study, read from its stored settings (for `--join` on any machine)."""
    probe = SweepJob(Path("."), [], sweep_dir, SweepSettings(storage=storage), study_name, 0)
    study = open_study(probe, create=False)
    recorded: dict[str, Any] | None = study.user_attrs.get(SETTINGS_ATTR)
    if recorded is None:
        raise OpenRecipeError(f"study {study_name!r} was not started by `openrecipe sweep`")
    settings = SweepSettings(**recorded["settings"], storage=storage, study=study_name, workers=workers)
    return SweepJob(
        Path(recorded["recipe"]), recorded["overrides"], sweep_dir, settings, study_name, recorded["base_seed"]
    )


def run_workers(job: SweepJob) -> None:
    """Work in this process (one worker) or in `workers` spawned processes that share the study."""
    if job.settings.workers == 1:
        work(job)
        return
    context = multiprocessing.get_context("spawn")
    processes = []
    for index in range(job.settings.workers):
        worker_job = SweepJob(**{**job.__dict__, "worker_index": index})
        process = context.Process(target=_work_quietly, args=(worker_job,), name=f"sweep-worker-{index}")
        process.start()
        processes.append(process)
    for process in processes:
        process.join()
    codes = [p.exitcode for p in processes]
    if any(codes):
        raise OpenRecipeError(
            f"sweep workers exited with codes {codes}",
            where=str(job.sweep_dir),
            fix="re-run the same command to continue the study (completed trials are kept)",
        )
