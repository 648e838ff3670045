"""A worker of ``vlkge tune``: claims the study's trials one at a time and trains each in its
run folder, reporting every epoch's validation metric to the study (docs/tuning.md).

``vlkge tune`` starts each worker as a fresh interpreter (``python -m vlkge.tuning.worker DIR``):
a process is never forked once torch runs threads. The worker pins torch to its share of the
cores, stops when the process that started it ends, and leaves its trial re-queued (with a
checkpoint) when a signal stops it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from vlkge.errors import ConfigError, Interrupted, VlkgeError, echo
from vlkge.runfolder import CONFIG, checkpoint_path
from vlkge.tuning import recovery
from vlkge.tuning.storage import URL_VARIABLE, open_storage
from vlkge.tuning.study import (
    TRIALS,
    TuneSettings,
    build_pruner,
    build_sampler,
    load_settings,
    trial_config,
)

log = logging.getLogger("vlkge")

POLL_S = 1.0  # seconds between looks for a trial while other workers' trials may come back


class Reporter:
    """The trainer's epoch callback for one trial: each validation to the study, and whether
    the pruner stops the trial there. A resumed trial first reports the epochs its last
    checkpoint kept (from the run folder's trace)."""

    def __init__(self, trial: optuna.Trial, metric: str, folder: Path):
        from vlkge.checkpoint import load_checkpoint
        from vlkge.training.tracking import read_trace

        self.trial, self.metric = trial, metric
        self.pruned, self.epochs = False, 0
        last = checkpoint_path(folder, "last")
        kept = load_checkpoint(last, {"epoch": int})["epoch"] if last.is_file() else 0
        for entry in read_trace(folder / "trace.jsonl"):
            if entry["epoch"] <= kept:
                self._report(entry)

    def _report(self, entry: dict) -> bool:
        self.epochs = entry["epoch"]
        if "valid" not in entry:
            return False
        self.trial.report(entry["valid"][self.metric], entry["epoch"])
        return True

    def __call__(self, entry: dict) -> bool:
        if self._report(entry):
            self.pruned = self.trial.should_prune()
        return self.pruned


def _stop_on_signal(signum, frame) -> None:
    raise Interrupted("", signum)


def _stop_with_parent(parent: int) -> None:
    """SIGTERM this worker when the ``vlkge tune`` process that started it ends (Linux)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it ended before the line above
        raise Interrupted("", signal.SIGTERM)


def run_trial(
    settings: TuneSettings,
    study: optuna.Study,
    storage: optuna.storages.RDBStorage,
    trial_id: int,
) -> None:
    """Train claimed trial ``trial_id`` and tell the study how it ended."""
    from vlkge.training.run import train

    frozen = storage.get_trial(trial_id)
    study.sampler = build_sampler(settings, frozen.number)
    trial = optuna.Trial(study, trial_id)
    folder = settings.run_folder(frozen)
    trial.set_user_attr("run", str(folder.relative_to(settings.folder)))
    try:
        cfg = trial_config(settings.config, settings.space.draw(trial))
    except ConfigError as exc:  # a combination of values the config refuses
        _fail(study, trial, str(exc))
        return
    resumed = (folder / CONFIG).is_file()
    log.info("trial %d: %s%s", frozen.number, "resuming in " if resumed else "", folder)
    try:
        reporter = Reporter(trial, settings.metric, folder)
        with recovery.Heartbeat(storage, trial_id):
            metrics = train(cfg, folder, on_epoch=reporter)
    except Interrupted:  # a checkpoint is saved: the trial's slot goes back to the queue
        for signum in (signal.SIGINT, signal.SIGTERM):  # the worker ends: no second stop
            signal.signal(signum, signal.SIG_IGN)
        recovery.fail_and_requeue(study, storage, trial_id, recovery.STOPPED)
        raise
    except VlkgeError as exc:  # this trial's own failure: a non-finite loss, a width too large
        _fail(study, trial, str(exc))
        return
    except Exception as exc:  # a bug: the trial fails and the worker stops with the traceback
        _fail(study, trial, f"{type(exc).__name__}: {exc}")
        raise
    trial.set_user_attr("epochs", reporter.epochs)
    if reporter.pruned:
        study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
    else:
        value = metrics[settings.split]["both"][settings.metric]
        study.tell(trial, value, skip_if_finished=True)


def _fail(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    log.warning("trial %d failed: %s", trial.number, reason)
    trial.set_user_attr(recovery.ERROR, echo(reason, quote=False))
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def pending(study: optuna.Study) -> bool:
    """Whether any trial waits or runs (a running one may come back re-queued)."""
    states = (TrialState.WAITING, TrialState.RUNNING)
    return bool(study.get_trials(deepcopy=False, states=states))


def work(folder: Path, url: str) -> None:
    """Claim and train trials until none is left."""
    settings = load_settings(folder)
    storage = open_storage(url)
    study = optuna.load_study(
        study_name=settings.study, storage=storage, pruner=build_pruner(settings)
    )
    (settings.folder / TRIALS).mkdir(parents=True, exist_ok=True)
    while True:
        recovery.requeue_dead(study, storage)
        trial_id = recovery.claim(study, storage)
        if trial_id is not None:
            run_trial(settings, study, storage, trial_id)
        elif pending(study):
            time.sleep(POLL_S)
        else:
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlkge.tuning.worker")
    parser.add_argument("folder", type=Path, help="the search folder (its tune.yaml)")
    parser.add_argument("--threads", type=int, required=True, help="torch threads")
    parser.add_argument("--parent", type=int, required=True, help="pid of vlkge tune")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop_on_signal)
    try:
        _stop_with_parent(args.parent)
        import torch

        torch.set_num_threads(args.threads)
        log.info("worker %d: %d threads", os.getpid(), args.threads)
        work(args.folder, os.environ.get(URL_VARIABLE) or load_settings(args.folder).storage)
    except Interrupted as exc:
        log.info("worker %d stopped by signal %d", os.getpid(), exc.signum)
        return 128 + exc.signum
    except VlkgeError as exc:
        print(f"vlkge: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
