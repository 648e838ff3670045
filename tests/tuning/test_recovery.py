"""Claims and re-queues: two processes never claim one trial, a trial whose worker died goes
back to the queue once (same parameters, same run folder), and not forever."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import optuna
import pytest
from optuna.trial import TrialState

from vlkge.tuning import recovery
from vlkge.tuning.storage import open_storage

SLOTS = 30


@pytest.fixture
def study_at(tmp_path):
    """A study with ``SLOTS`` waiting trials in a SQLite file; (study, storage, url)."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = open_storage(url)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    for _ in range(SLOTS):
        study.enqueue_trial({})
    return study, storage, url


CLAIMER = """
import sys
import optuna
from vlkge.tuning import recovery
from vlkge.tuning.storage import open_storage

storage = open_storage(sys.argv[1])
study = optuna.load_study(study_name="s", storage=storage)
while (trial_id := recovery.claim(study, storage)) is not None:
    print(storage.get_trial(trial_id).number, flush=True)
"""


def test_two_processes_never_claim_one_trial(study_at, command_env):
    study, storage, url = study_at
    script = textwrap.dedent(CLAIMER)
    claimers = [
        subprocess.Popen(
            [sys.executable, "-c", script, url], stdout=subprocess.PIPE, text=True, env=command_env
        )
        for _ in range(2)
    ]
    claimed = [p.communicate(timeout=120)[0].split() for p in claimers]
    assert all(p.returncode == 0 for p in claimers)
    numbers = [int(n) for n in claimed[0] + claimed[1]]
    assert sorted(numbers) == list(range(SLOTS))  # each slot once, none twice
    assert len(study.get_trials(states=(TrialState.RUNNING,))) == SLOTS


def test_a_dead_workers_trial_is_requeued_once(study_at, command_env):
    study, storage, _ = study_at
    trial_id = recovery.claim(study, storage)
    trial = optuna.Trial(study, trial_id)
    trial.suggest_float("x", 0, 1)
    trial.set_user_attr("run", "trials/0000")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    storage.set_trial_system_attr(trial_id, recovery.WORKER, recovery.process_identity(gone.pid))
    assert recovery.requeue_dead(study, storage) == [0]
    assert recovery.requeue_dead(study, storage) == []  # once only
    dead = storage.get_trial(trial_id)
    assert dead.state == TrialState.FAIL and dead.user_attrs["requeued"] == "died"
    copy = study.get_trials()[-1]
    assert copy.state == TrialState.WAITING and copy.number == SLOTS
    assert copy.params == dead.params and recovery.root_number(copy) == 0
    claimed = recovery.claim(study, storage)  # the copy waits behind the other slots
    assert storage.get_trial(claimed).number == 1


def test_a_live_worker_keeps_its_trial(study_at):
    study, storage, _ = study_at
    recovery.claim(study, storage)  # by this process, alive
    assert recovery.is_alive(recovery.process_identity()) is True
    assert recovery.is_alive("another-host:1:1") is None  # left to the heartbeat
    assert recovery.requeue_dead(study, storage) == []


def test_a_slot_left_between_failure_and_copy_continues_once(study_at):
    """A process stopped after failing its trial but before queueing the copy: the next look
    for dead workers queues it, and only once."""
    study, storage, _ = study_at
    trial_id = recovery.claim(study, storage)
    storage.set_trial_user_attr(trial_id, recovery.REQUEUED, recovery.STOPPED)
    storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
    assert recovery.requeue_dead(study, storage) == [0]
    assert recovery.requeue_dead(study, storage) == []
    assert recovery.root_number(study.get_trials()[-1]) == 0


def test_a_trial_that_keeps_killing_its_worker_is_given_up(tmp_path, caplog):
    storage = open_storage(f"sqlite:///{tmp_path / 'one.db'}")
    study = optuna.create_study(storage=storage, study_name="one")
    study.enqueue_trial({})
    for _ in range(recovery.MAX_DEATHS + 2):  # stops (a signal, the time limit) are no deaths
        trial_id = recovery.claim(study, storage)
        assert recovery.fail_and_requeue(study, storage, trial_id, recovery.STOPPED)
    for _ in range(recovery.MAX_DEATHS + 1):
        trial_id = recovery.claim(study, storage)
        assert recovery.root_number(storage.get_trial(trial_id)) == 0  # one slot throughout
        assert recovery.fail_and_requeue(study, storage, trial_id, recovery.DIED)
    assert recovery.claim(study, storage) is None
    assert f"lost its worker {recovery.MAX_DEATHS + 1} times; not re-queued" in caplog.text
    assert recovery.requeue_dead(study, storage) == []  # and no later look re-queues it
