"""Trials are never lost and never run twice: claims, heartbeats, and re-queueing the trial of a
worker that died (docs/tuning.md, "Resuming").

A search has a fixed number of trial slots: ``WAITING`` trials, created once. A worker claims
one by moving it from ``WAITING`` to ``RUNNING``, which only one process can do (the database
locks the trial's row; SQLite ignores such locks, so processes sharing a SQLite file take a
file lock beside it). A claimed trial names its worker (host, pid, start time) and records a
heartbeat while it trains. A ``RUNNING`` trial whose worker is gone (its process ended on this
host, or its heartbeat is older than :data:`GRACE_S` anywhere) is marked failed and a
``WAITING`` copy with the same parameters takes its slot: the copy trains in the same run
folder, so it resumes from the last checkpoint. Failing a trial and queueing its copy are two
steps; a process stopped between them leaves a slot that the next look for dead workers
continues, so a slot is never lost and never continued twice.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import socket
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)

HEARTBEAT_S = 10  # seconds between a training worker's heartbeats
GRACE_S = 60  # a trial whose heartbeat is older than this lost its worker
MAX_DEATHS = 3  # a trial whose worker died this often is not re-queued again
HOST = socket.gethostname()
#: system attributes of a trial: its worker, and the trial whose slot (run folder) it continues
WORKER, CONTINUES = "vlkge:worker", "vlkge:continues"
#: user attributes of a failed trial: why it failed for itself (final), or that its worker was
#: stopped or died (its slot continues)
ERROR, REQUEUED = "error", "requeued"
STOPPED, DIED = "stopped", "died"
FIXED = "fixed_params"  # Optuna's: parameter values set before the trial runs


def process_identity(pid: int | None = None) -> str:
    """``host:pid:start``: names a process even after its pid is reused."""
    pid = os.getpid() if pid is None else pid
    return f"{HOST}:{pid}:{_start_time(pid)}"


def _start_time(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def is_alive(identity: str) -> bool | None:
    """Whether the process ``identity`` names still runs; None for another host's."""
    host, pid_text, start = identity.rsplit(":", 2)
    if host != HOST:
        return None
    pid = int(pid_text)
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").is_file():
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z" and _start_time(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def root_number(trial: FrozenTrial) -> int:
    """The number of the first trial of ``trial``'s slot: it names the slot's run folder."""
    return trial.system_attrs.get(CONTINUES, trial.number)


@contextlib.contextmanager
def study_lock(storage: optuna.storages.RDBStorage) -> Iterator[None]:
    """Serialise the read-then-write steps of claims and re-queues (see the module's text)."""
    from filelock import FileLock
    from sqlalchemy.engine import make_url

    url = make_url(storage.url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        yield
        return
    with FileLock(f"{url.database}.lock"):
        yield


def study_id(study: optuna.Study, storage: optuna.storages.RDBStorage) -> int:
    return storage.get_study_id_from_name(study.study_name)


def claim(study: optuna.Study, storage: optuna.storages.RDBStorage) -> int | None:
    """The id of a ``WAITING`` trial this process now runs, or None when none is left."""
    sid = study_id(study, storage)
    with study_lock(storage):
        for trial in storage.get_all_trials(sid, deepcopy=False, states=(TrialState.WAITING,)):
            trial_id = storage.get_trial_id_from_study_id_trial_number(sid, trial.number)
            try:
                won = storage.set_trial_state_values(trial_id, state=TrialState.RUNNING)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            if won:
                storage.set_trial_system_attr(trial_id, WORKER, process_identity())
                storage.record_heartbeat(trial_id)
                return trial_id
    return None


def _slot(trials: list[FrozenTrial], trial: FrozenTrial) -> list[FrozenTrial]:
    """The trials of ``trial``'s slot, in order: the first, then those continuing it."""
    root = root_number(trial)
    return sorted((t for t in trials if root_number(t) == root), key=lambda t: t.number)


def continue_slot(study: optuna.Study, trial: FrozenTrial, quiet: bool = False) -> bool:
    """Give the slot of ``trial``, failed for its worker, a ``WAITING`` copy with the same
    parameters (and so the same run folder); nothing when the slot already continues, when its
    last trial failed for itself (:data:`ERROR`), or when its workers died more than
    :data:`MAX_DEATHS` times. Safe to repeat: callers hold :func:`study_lock`. Optuna calls
    this for the trials it fails for a stale heartbeat."""
    slot = _slot(study.get_trials(deepcopy=False), trial)
    last = slot[-1]
    if last.state != TrialState.FAIL or ERROR in last.user_attrs:
        return False
    deaths = [t for t in slot if t.user_attrs.get(REQUEUED, DIED) == DIED]
    if len(deaths) > MAX_DEATHS:
        if not quiet:
            log.warning(
                "trial %d lost its worker %d times; not re-queued", last.number, len(deaths)
            )
        return False
    fixed = {**last.system_attrs.get(FIXED, {}), **last.params}
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=last.params,
            distributions=last.distributions,
            system_attrs={CONTINUES: root_number(last), FIXED: fixed},
        )
    )
    return True


def fail_and_requeue(
    study: optuna.Study, storage: optuna.storages.RDBStorage, trial_id: int, why: str
) -> bool:
    """Mark ``RUNNING`` trial ``trial_id`` failed for its worker (``why``: :data:`STOPPED` or
    :data:`DIED`) and continue its slot; False when another process already did."""
    with study_lock(storage):
        try:
            storage.set_trial_user_attr(trial_id, REQUEUED, why)
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                return False
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        continue_slot(study, storage.get_trial(trial_id))
    return True


def requeue_dead(study: optuna.Study, storage: optuna.storages.RDBStorage) -> list[int]:
    """Re-queue the ``RUNNING`` trials whose worker is gone (and any slot a process stopped
    between failing a trial and queueing its copy); returns the failed trials' numbers."""
    sid = study_id(study, storage)
    now = datetime.datetime.now()
    found = []
    for trial in storage.get_all_trials(sid, deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.system_attrs.get(WORKER)
        if worker is None:  # claimed by a process that died before it said so
            started = trial.datetime_start or now
            dead = (now - started).total_seconds() > GRACE_S
        else:
            dead = is_alive(worker) is False
        if not dead:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(sid, trial.number)
        if fail_and_requeue(study, storage, trial_id, DIED):
            found.append(trial.number)
    with study_lock(storage), warnings.catch_warnings():  # other hosts': heartbeats stopped
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
        optuna.storages.fail_stale_trials(study)
        trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
        last_of_slot = {root_number(t): t for t in trials}
        for last in last_of_slot.values():
            if last.state == TrialState.FAIL and continue_slot(study, last, quiet=True):
                found.append(last.number)
    after = {t.number for t in trials if t.state == TrialState.FAIL}
    return sorted(set(found) | (after - before))


class Heartbeat:
    """Records trial ``trial_id``'s heartbeat every :data:`HEARTBEAT_S` seconds in a thread
    while the block runs."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial_id: int):
        self.storage, self.trial_id = storage, trial_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as exc:  # a database hiccup: the next beat tries again
                log.warning("trial heartbeat not recorded: %s", exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
