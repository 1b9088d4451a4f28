"""Where a study lives: a journal file (default; several processes, or machines on shared storage) or an RDB.

Optuna's journal storage has no heartbeat, so a worker killed mid-trial would leave that trial RUNNING
forever. `HeartbeatJournalStorage` adds Optuna's own heartbeat interface to it (the heartbeat is a trial
system attribute), so `fail_stale_trials` and `RetryHeartbeatStaleTrialCallback` work as with an RDB.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import FrozenTrial, TrialState

HEARTBEAT_ATTR = "openrecipe:heartbeat"
RDB_SCHEMES = ("postgresql", "mysql", "sqlite", "mariadb", "oracle", "mssql")


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Journal storage whose running trials record a wall-clock heartbeat every `interval` seconds."""

    def __init__(
        self,
        backend,
        *,
        interval: int,
        grace: int,
        stale_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    ) -> None:
        super().__init__(backend)
        self._interval = interval
        self._grace = grace
        self._stale_callback = stale_callback

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = trial.system_attrs.get(HEARTBEAT_ATTR)
            if beat is not None and now - float(beat) > self._grace:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self._interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._stale_callback


def is_rdb_url(storage: str) -> bool:
    return "://" in storage and storage.split("://", 1)[0].split("+")[0] in RDB_SCHEMES


def open_storage(storage: str, *, interval: int, grace: int, max_retries: int) -> BaseStorage:
    """An RDB URL opens RDBStorage; anything else is a journal file path (created on first use)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retries)
    if is_rdb_url(storage):
        return RDBStorage(
            storage, heartbeat_interval=interval, grace_period=grace, heartbeat_stale_trial_callback=retry
        )
    path = Path(storage)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The open(2)-based lock works on local disks and on NFSv3+, so workers on several machines can share it.
    backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
    return HeartbeatJournalStorage(backend, interval=interval, grace=grace, stale_callback=retry)


def fail_stale(study: optuna.Study) -> list[int]:
    """Fail (and queue for retry) trials whose worker stopped beating; returns their numbers."""
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    return sorted(before - after)
