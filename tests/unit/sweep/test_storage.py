"""The journal study: heartbeats make a dead worker's trial fail and come back as a retry; several
processes share one study file."""

import multiprocessing

import optuna
from optuna.trial import TrialState

from openrecipe.sweep import storage as storage_module
from openrecipe.sweep.storage import HEARTBEAT_ATTR, fail_stale, is_rdb_url, open_storage


def test_rdb_urls_and_journal_paths_are_told_apart():
    assert is_rdb_url("postgresql://user@host/db") and is_rdb_url("mysql+pymysql://h/db")
    assert is_rdb_url("sqlite:///study.db")
    assert not is_rdb_url("/shared/nfs/study.journal") and not is_rdb_url("sweeps/a/study.journal")


def test_a_trial_without_heartbeat_is_failed_and_retried_with_its_params(tmp_path, monkeypatch):
    storage = open_storage(str(tmp_path / "study.journal"), interval=1, grace=5, max_retries=2)
    study = optuna.create_study(study_name="s", storage=storage)
    done = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.tell(done, 1.0)
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage.record_heartbeat(dead._trial_id)
    assert fail_stale(study) == []  # a fresh heartbeat: the worker may be alive
    clock = storage_module.time.time()
    monkeypatch.setattr(storage_module.time, "time", lambda: clock + 6)
    assert fail_stale(study) == [dead.number]
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    retry = trials[2]
    assert retry.params == dead.params and retry.system_attrs["failed_trial"] == dead.number
    assert trials[0].value == 1.0  # the completed trial is untouched
    assert HEARTBEAT_ATTR in trials[1].system_attrs


def _worker(path: str, trials: int) -> None:
    storage = open_storage(path, interval=1, grace=5, max_retries=1)
    study = optuna.load_study(study_name="shared", storage=storage, sampler=optuna.samplers.RandomSampler())

    def stop(study, trial):
        if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= trials:
            study.stop()

    study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, callbacks=[stop])


def test_two_processes_share_one_journal_study(tmp_path):
    path = str(tmp_path / "study.journal")
    optuna.create_study(study_name="shared", storage=open_storage(path, interval=1, grace=5, max_retries=1))
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker, args=(path, 12)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert [w.exitcode for w in workers] == [0, 0]
    study = optuna.load_study(study_name="shared", storage=open_storage(path, interval=1, grace=5, max_retries=1))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert 12 <= len(complete) <= 13  # a worker may finish one trial while the other reaches the count
    assert len({t.number for t in complete}) == len(complete)
