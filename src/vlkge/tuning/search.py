"""Running a search: its settings from the command line (new, rerun or ``--resume``), the worker
processes, one line per finished trial and a bar over trials, a time limit, Ctrl-C, and the
results once no trial is left (docs/tuning.md).

The coordinator never imports torch while workers run: workers are fresh interpreters with
their own share of the cores, in their own session, so a Ctrl-C reaches them once, forwarded
as SIGTERM (each saves a checkpoint and re-queues its trial).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from tqdm.auto import tqdm

import vlkge
from vlkge import config as config_mod
from vlkge.errors import ConfigError, Interrupted, VlkgeError
from vlkge.reports.tables import metrics_table
from vlkge.runfolder import absolute_paths
from vlkge.terms import SIDES
from vlkge.tuning import recovery
from vlkge.tuning.report import write_report
from vlkge.tuning.results import (
    BEST_CONFIG,
    TrialRow,
    best_trial,
    format_table,
    score_best_once,
    slot_states,
    trial_line,
    trial_rows,
    write_best,
)
from vlkge.tuning.space import load_space
from vlkge.tuning.storage import DATABASE, URL_VARIABLE, default_url, open_storage, shown
from vlkge.tuning.study import (
    TuneSettings,
    extend_budget,
    is_search_folder,
    load_settings,
    open_study,
)

log = logging.getLogger(__name__)

CHECK_S = 0.2  # seconds between looks at the workers
POLL_S = 2.0  # seconds between reads of the study (cheap for the coordinator's one core)
WORKERS = "workers"  # DIR/workers/N.log: what each worker printed
ABORT_AFTER = 3  # failed trials, none finished well: the base config or space is broken


def prepare(
    *,
    config: str | None,
    sets: list[str],
    space: str | None,
    trials: int | None,
    out: str | None,
    storage: str | None,
    study: str | None,
    resume: str | None,
) -> tuple[TuneSettings, str]:
    """The settings of the search the command line asks for, and the storage URL (with its
    password): a new search, the same command again (it continues), or ``--resume DIR``."""
    if trials is not None and trials <= 0:
        raise VlkgeError(f"--trials must be positive, not {trials}")
    if resume:
        if config or sets or space or out or study:
            raise VlkgeError(
                "--resume DIR continues a search as it was started: no --config, --set, "
                "--space, --out or --study"
            )
        saved = load_settings(resume)
        saved.folder = saved.folder.resolve()
        return _continued(saved, saved, trials, storage)
    if not out:
        raise VlkgeError("tune needs --out DIR (or --resume DIR)")
    if not space:
        raise VlkgeError("tune needs --space FILE (its format: vlkge config show --space)")
    folder = Path(out).resolve()
    cfg = absolute_paths(config_mod.load_config(config, sets))
    if not cfg["validation"]["every"]:
        raise ConfigError("validation.every: tune selects trials on validation; set it above 0")
    if not cfg["training"]["checkpoint_every"]:
        log.warning("training.checkpoint_every is 0: a stopped trial restarts from epoch 0")
    searched = load_space(space)
    if trials is None and searched.settings["sampler"] != "grid":
        raise VlkgeError("tune needs --trials N (only the grid sampler counts its own)")
    count = searched.grid_size() if trials is None else trials
    url = storage or default_url(folder)
    wanted = TuneSettings(folder, study or folder.name, shown(url), count, cfg, searched)
    if is_search_folder(folder):
        return _continued(load_settings(folder), wanted, trials, storage)
    ours = (".", DATABASE)  # hidden files, and the database of a first run stopped early
    if folder.is_dir() and any(not p.name.startswith(ours) for p in folder.iterdir()):
        raise VlkgeError(
            f"{folder}: not a vlkge tune folder (no tune.yaml) and not empty; use a new --out"
        )
    return wanted, url


def _continued(
    saved: TuneSettings, wanted: TuneSettings, trials: int | None, storage: str | None
) -> tuple[TuneSettings, str]:
    """The saved search of a folder, continued as asked (the study checks the rest)."""
    if storage is not None and shown(storage) != saved.storage:
        raise VlkgeError(
            f"{saved.folder}: its study is in {saved.storage}, not {shown(storage)}; "
            "use a new --out folder for another study"
        )
    if wanted.study != saved.study:
        raise VlkgeError(
            f"{saved.folder}: its study is named {saved.study!r}, not {wanted.study!r}"
        )
    changed = config_mod.diff(saved.definition(), wanted.definition())
    if changed:
        raise VlkgeError(
            f"{saved.folder} holds a search of another config or space (differs in "
            f"{', '.join(sorted(changed)[:5])}); use a new --out folder"
        )
    saved.config = wanted.config  # host-local keys (paths, device) as given now
    saved.trials = trials or saved.trials
    return saved, storage or saved.storage


@dataclass
class Outcome:
    """How a search command ended."""

    settings: TuneSettings
    rows: list[TrialRow]
    budget: int
    complete: bool
    scored: dict | None  # the best trial's test metrics
    report: Path | None


class Workers:
    """``count`` worker processes, each a fresh interpreter with ``cores // count`` threads."""

    def __init__(self, settings: TuneSettings, url: str, count: int):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        self.threads = max(1, (cores or 1) // count)
        if count > (cores or 1):
            log.warning("%d workers share %d cores: each gets one thread", count, cores)
        self.logs = settings.folder / WORKERS
        self.logs.mkdir(parents=True, exist_ok=True)
        source = str(Path(vlkge.__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
        env = {
            **os.environ,
            "PYTHONPATH": path,
            "OMP_NUM_THREADS": str(self.threads),
            "MKL_NUM_THREADS": str(self.threads),
            URL_VARIABLE: url,
        }
        command = [sys.executable, "-m", "vlkge.tuning.worker", str(settings.folder)]
        command += ["--threads", str(self.threads), "--parent", str(os.getpid())]
        self.processes: list[subprocess.Popen] = []
        for index in range(1, count + 1):
            with open(self.log_path(index), "ab") as out:
                self.processes.append(
                    subprocess.Popen(
                        command,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=env,
                        start_new_session=True,
                    )
                )
        self.ended: dict[int, int] = {}

    def log_path(self, index: int) -> Path:
        return self.logs / f"{index}.log"

    def poll(self) -> list[tuple[int, int]]:
        """(worker, exit status) of the workers that ended since the last call."""
        ended = []
        for index, process in enumerate(self.processes, 1):
            status = process.poll()
            if status is not None and index not in self.ended:
                self.ended[index] = status
                ended.append((index, status))
        return ended

    @property
    def running(self) -> bool:
        return len(self.ended) < len(self.processes)

    def send(self, signum: int) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signum)

    def last_line(self, index: int) -> str:
        lines = self.log_path(index).read_text(encoding="utf-8", errors="replace").splitlines()
        return next((line for line in reversed(lines) if line.strip()), "")


class Signals:
    """SIGINT and SIGTERM while workers run: each is forwarded to them as SIGTERM."""

    def __init__(self, workers: Workers):
        self.workers, self.signum = workers, None
        self._previous = {
            s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)
        }

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            log.warning("stopping: each worker saves its trial's checkpoint and re-queues it")
        self.signum = self.signum or signum
        self.workers.send(signal.SIGTERM)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def search(settings: TuneSettings, url: str, workers: int = 1, timeout: float | None = None):
    """Run ``settings``' search with ``workers`` processes until no trial is left (or
    ``timeout`` seconds pass: running trials are stopped, saved and re-queued)."""
    if workers <= 0:
        raise VlkgeError(f"--workers must be positive, not {workers}")
    if timeout is not None and timeout <= 0:
        raise VlkgeError(f"--timeout must be positive, not {timeout}")
    settings.folder.mkdir(parents=True, exist_ok=True)
    storage = open_storage(url)
    study = open_study(settings, storage)
    total = extend_budget(settings, study, storage)
    settings.trials = total
    settings.save()
    lost = recovery.requeue_dead(study, storage)
    if lost:
        log.info("re-queued trials %s, whose workers died in an earlier session", lost)
    stopped = None
    if _pending(study):
        stopped = _run_workers(settings, study, storage, url, workers, timeout, total)
    rows = trial_rows(study)
    complete = not _pending(study)
    best = best_trial(study)
    if best is not None:
        write_best(settings, best)
    scored = score_best_once(settings, best) if complete and best is not None else None
    report = write_report(settings, study, rows, total, scored)
    if stopped is not None and not complete:
        raise VlkgeError(stopped)
    return Outcome(settings, rows, total, complete, scored, report)


def _pending(study: optuna.Study) -> bool:
    states = (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)
    return bool(study.get_trials(deepcopy=False, states=states))


def _finished(rows: list[TrialRow]) -> dict[int, str]:
    return {n: s for n, s in slot_states(rows).items() if s not in ("running", "waiting")}


def _run_workers(settings, study, storage, url, count, timeout, total) -> str | None:
    """Run the workers until they end; returns why the search stopped short (None when it did
    not, or when the time limit stopped it)."""
    rows = trial_rows(study)
    shown_rows = {r.number for r in rows if r.state not in ("running", "waiting")}
    done = len(_finished(rows))
    pool = Workers(settings, url, count)
    log.info(
        "study %r in %s: %d of %d trials finished; %d worker(s), %d thread(s) each, logs in %s",
        settings.study,
        settings.storage,
        done,
        total,
        count,
        pool.threads,
        pool.logs,
    )
    deadline = None if timeout is None else time.monotonic() + timeout
    signals = Signals(pool)
    lost, aborted, timed_out = None, None, False
    bar = tqdm(
        total=total, initial=done, unit="trial", desc="trials", disable=not sys.stderr.isatty()
    )
    next_read = 0.0
    try:
        while pool.running:
            time.sleep(CHECK_S)
            ended = pool.poll()
            for index, status in ended:
                if status and signals.signum is None and not (aborted or timed_out):
                    lost = lost or _worker_ended(pool, index, status)
                    requeued = recovery.requeue_dead(study, storage)
                    if requeued:
                        log.info("re-queued trials %s", requeued)
            now = time.monotonic()
            if deadline is not None and now > deadline and not timed_out:
                log.info("time limit reached: running trials save a checkpoint and are re-queued")
                timed_out = True
                pool.send(signal.SIGTERM)
            if not (ended or now >= next_read or not pool.running):
                continue
            next_read = now + POLL_S  # and a last read once every worker ended
            rows = trial_rows(study)
            for row in rows:
                if row.number not in shown_rows and row.state not in ("running", "waiting"):
                    shown_rows.add(row.number)
                    log.info(trial_line(row, settings.metric, settings.split))
            finished = _finished(rows)
            bar.update(len(finished) - bar.n)
            failed = [r for r in rows if r.state == "failed"]
            if len(failed) >= ABORT_AFTER and len(failed) == len(finished) and not aborted:
                aborted = f"the first {len(failed)} trials failed (trial {failed[0].number}: "
                aborted += f"{failed[0].note}); fix the base config or the space"
                pool.send(signal.SIGTERM)
    finally:
        bar.close()
        signals.restore()
    resume = f"continue with `vlkge tune --resume {settings.folder}`"
    if signals.signum is not None:
        left = total - len(_finished(trial_rows(study)))
        raise Interrupted(f"{left} of {total} trials left; {resume}", signals.signum)
    if aborted:
        raise VlkgeError(aborted)
    return None if lost is None else f"{lost}; {resume}"


def _worker_ended(pool: Workers, index: int, status: int) -> str:
    """Log a worker that ended badly; returns what to say if its trials are left undone."""
    if status < 0:
        name = signal.Signals(-status).name
        log.warning("worker %d was killed by %s; its trial goes back to the queue", index, name)
        return f"worker {index} was killed by {name}"
    line = pool.last_line(index)
    log.warning("worker %d failed (exit %d): %s; see %s", index, status, line, pool.log_path(index))
    return f"worker {index} failed: {line} (see {pool.log_path(index)})"


def show(folder: str | Path, storage: str | None = None) -> str:
    """The trials table of the search in ``folder`` (``vlkge tune DIR --show``)."""
    settings = load_settings(folder)
    store = open_storage(storage or settings.storage)
    try:
        study = optuna.load_study(study_name=settings.study, storage=store)
    except KeyError:
        raise VlkgeError(f"{folder}: no study {settings.study!r} in {settings.storage}") from None
    return summary(settings, trial_rows(study))


def summary(settings: TuneSettings, rows: list[TrialRow]) -> str:
    keys = [p.key for p in settings.space.parameters]
    return format_table(rows, keys, settings.metric, settings.split)


def closing(outcome: Outcome) -> str:
    """What the command prints after the table: the best trial, its test metrics, the files."""
    settings = outcome.settings
    lines = []
    best = next((r for r in outcome.rows if r.best), None)
    if best is not None:
        lines.append(
            f"best trial {best.number}: {settings.split} {settings.metric} {best.value:.4f}, "
            f"run folder {settings.folder / best.run}"
        )
        for split, block in (outcome.scored or {}).get("metrics", {}).items():
            sides = {k: block[k] for k in ("both", *SIDES) if k in block}
            lines.append(metrics_table(sides, f"{split}, once"))
        lines.append(f"best config: {settings.folder / BEST_CONFIG}")
    if not outcome.complete:
        done = len(_finished(outcome.rows))
        lines.append(
            f"{done} of {outcome.budget} trials finished before the time limit; continue with "
            f"`vlkge tune --resume {settings.folder}`"
        )
    lines.append(f"report: {outcome.report}")
    return "\n".join(lines)
