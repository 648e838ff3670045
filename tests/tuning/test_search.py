"""Whole searches on Nations through the command line: workers killed mid-trial lose nothing
and count nothing twice, pruning stops hopeless trials early, and every wrong command line is
one line (exit 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
import yaml
from optuna.trial import TrialState

from vlkge.cli import main
from vlkge.config import load_config
from vlkge.training.tracking import read_trace
from vlkge.tuning import search as search_mod
from vlkge.tuning.recovery import WORKER
from vlkge.tuning.results import BEST_CONFIG, BEST_METRICS

KILL_EPOCHS = 8


def open_study(out: Path) -> optuna.Study:
    return optuna.load_study(study_name=out.name, storage=f"sqlite:///{out / 'study.db'}")


def wait_mid_trial(out: Path, skip: set[int], timeout: float = 120) -> tuple[int, int]:
    """(pid of a worker, number of its trial) once that trial has saved a checkpoint and has
    epochs left; trials in ``skip`` are not chosen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        # a trial's folder: the command has created the study (opening the database before
        # that races the command to create its tables)
        if not (out / "study.db").is_file() or not any(p.is_dir() for p in out.iterdir()):
            continue
        try:
            running = open_study(out).get_trials(states=(TrialState.RUNNING,))
        except (
            KeyError,
            optuna.exceptions.StorageInternalError,
            sqlalchemy.exc.OperationalError,
        ):
            continue
        for trial in running:
            if trial.number in skip or "run" not in trial.user_attrs:
                continue
            run = out / trial.user_attrs["run"]
            done = len(read_trace(run / "trace.jsonl"))
            # an epoch's trace line comes before its checkpoint is on disk (it is written in
            # the background): a kill between the two restarts the trial from scratch
            if 1 <= done <= KILL_EPOCHS - 3 and (run / "checkpoints" / "last.pt").is_file():
                return int(trial.system_attrs[WORKER].split(":")[1]), trial.number
    raise AssertionError("no trial was caught in the middle of its training")


def wait_requeued(out: Path, number: int, timeout: float = 120) -> None:
    """Return once trial ``number`` is no longer running (its dead worker noticed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            trial = open_study(out).get_trials()[number]
        except (KeyError, IndexError, optuna.exceptions.StorageInternalError):
            continue
        if trial.state != TrialState.RUNNING:
            return
    raise AssertionError(f"trial {number} still runs {timeout} s after its worker was killed")


def test_killed_workers_lose_no_trial(
    base_config, space_file, vlkge_command, command_env, tmp_path
):
    """One worker SIGKILLed mid-trial, then the whole command stopped by SIGTERM mid-trial; the
    same command again ends the study with 8 complete trials, none run twice, the killed
    trial resumed from its checkpoint to the metrics of an uninterrupted run."""
    space = space_file(
        {
            "sampler": "random",
            "pruner": "none",
            "parameters": {
                "training.optimizer.lr": {"low": 0.05, "high": 0.5, "log": True},
                "model.dim": [8, 16],
            },
        }
    )
    out = tmp_path / "search"
    command = vlkge_command(
        "tune",
        "--config", str(base_config), "--space", str(space), "--trials", "8", "--out", str(out),
        "--workers", "2", "--set", f"training.epochs={KILL_EPOCHS}",
    )  # fmt: skip
    env = command_env
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        pid, killed = wait_mid_trial(out, skip=set())
        os.kill(pid, signal.SIGKILL)
        wait_requeued(out, killed)  # the command saw the death before it is stopped itself
        _, stopped = wait_mid_trial(out, skip={killed})
        first.send_signal(signal.SIGTERM)  # a scheduler ends the job
        _, err = first.communicate(timeout=120)
    finally:
        first.kill()
    err = err.decode()
    assert first.returncode == 128 + signal.SIGTERM, err
    assert "was killed by SIGKILL" in err and "vlkge tune --resume" in err.splitlines()[-1]

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    trials = open_study(out).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 8 and {t.state for t in trials} <= {
        TrialState.COMPLETE,
        TrialState.FAIL,
    }
    runs = {t.user_attrs["run"] for t in complete}
    assert runs == {f"trials/{n:04d}" for n in range(8)}  # one run folder per slot
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 8
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert {t.number for t in failed} >= {killed, stopped}
    for trial in failed:  # each failure handed its slot (and run folder) to a later trial
        assert any(t.user_attrs["run"] == trial.user_attrs["run"] for t in complete)
    for run in runs:  # every epoch trained once: no trial ran twice
        assert [e["epoch"] for e in read_trace(out / run / "trace.jsonl")] == list(
            range(1, KILL_EPOCHS + 1)
        )
    logs = "".join(p.read_text() for p in (out / "workers").glob("*.log"))
    assert logs.count("resuming after epoch") >= 2  # the killed and the stopped trial

    resumed = out / f"trials/{killed:04d}"
    reference = tmp_path / "reference"
    threads = max(1, len(os.sched_getaffinity(0)) // 2)  # as each of the 2 workers had
    subprocess.run(
        vlkge_command("train", "--config", str(resumed / "config.yaml"))
        + ["--out", str(reference), "--set", f"num_threads={threads}"],
        env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    got = json.loads((resumed / "metrics.json").read_text())["valid"]["both"]
    want = json.loads((reference / "metrics.json").read_text())["valid"]["both"]
    assert got == pytest.approx(want, abs=1e-9)
    losses = [e["loss"] for e in read_trace(resumed / "trace.jsonl")]
    assert losses == pytest.approx([e["loss"] for e in read_trace(reference / "trace.jsonl")])

    assert "8 of 8" not in again.stdout and again.stdout.count("complete") == 8
    scored = (out / BEST_METRICS).stat().st_mtime_ns
    assert main(["tune", "--resume", str(out)]) == 0  # nothing left: the test is not rescored
    assert (out / BEST_METRICS).stat().st_mtime_ns == scored


def test_pruning_stops_hopeless_trials(base_config, space_file, tmp_path, capsys):
    """A grid with a hopeless learning rate: its trials stop before their last epoch, and are
    still run folders other commands read; the best trial becomes best.yaml."""
    space = space_file(
        {
            "sampler": "grid",
            "seed": 2,  # the grid's order: 0.1, 1e-6, 3e-6, 0.3
            "pruner": "median",
            "startup_trials": 1,
            "parameters": {"training.optimizer.lr": [0.3, 0.1, 1.0e-6, 3.0e-6]},
        }
    )
    out = tmp_path / "search"
    epochs = load_config(base_config)["training"]["epochs"]
    args = ["--config", str(base_config), "--space", str(space), "--out", str(out)]
    assert main(["tune", *args]) == 0
    printed = capsys.readouterr()
    study = open_study(out)
    trials = study.get_trials()
    assert len(trials) == 4  # the grid's size
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(t.params["training.optimizer.lr"] < 1e-4 for t in pruned)
    for trial in pruned:
        assert trial.user_attrs["epochs"] < epochs
        assert len(read_trace(out / trial.user_attrs["run"] / "trace.jsonl")) < epochs
    assert main(["compare", *(str(out / t.user_attrs["run"]) for t in trials)]) == 0
    best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    cfg = load_config(out / BEST_CONFIG)
    assert cfg["training"]["optimizer"]["lr"] == best.params["training.optimizer.lr"] >= 0.1
    assert cfg["evaluation"]["splits"] == ["valid", "test"]  # as the base config scores
    assert json.loads((out / BEST_METRICS).read_text())["trial"] == best.number
    assert f"best trial {best.number}" in printed.out and "test, once" in printed.out
    assert "pruned after epoch" in printed.out
    page = (out / "report.html").read_text()
    assert page.count('data-state="pruned"') == len(pruned)
    for section in ("summary", "trial-table", "history-plot", "parallel-plot", "best-test"):
        assert f'id="{section}"' in page
    assert main(["tune", str(out), "--show"]) == 0
    shown = capsys.readouterr().out
    assert shown.count("pruned") >= len(pruned) and "* the best trial" in shown


def _bad(capsys, *args: str) -> str:
    code = main(["tune", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("vlkge: error: ") and err.count("\n") == 1, err
    return err


def test_bad_command_lines_are_one_line(base_config, space_file, tmp_path, capsys):
    space = str(space_file({"parameters": {"model.dim": [8, 16]}}))
    base = str(base_config)
    out = str(tmp_path / "out")
    assert "needs --space" in _bad(capsys, "--config", base, "--out", out, "--trials", "2")
    assert "needs --out" in _bad(capsys, "--space", space, "--trials", "2")
    assert "needs --trials" in _bad(capsys, "--space", space, "--out", out)
    assert "--trials must be positive" in _bad(
        capsys, "--space", space, "--out", out, "--trials", "0"
    )
    assert "--workers must be positive" in _bad(
        capsys, "--space", space, "--out", out, "--trials", "2", "--workers", "0"
    )
    assert "validation.every" in _bad(
        capsys, "--space", space, "--out", out, "--trials", "2", "--set", "validation.every=0"
    )
    bad_space = str(space_file({"parameters": {"model.dimm": [8]}}, "bad.yaml"))
    assert "did you mean model.dim?" in _bad(
        capsys, "--space", bad_space, "--out", out, "--trials", "2"
    )
    assert "continues a search as it was started" in _bad(capsys, "--resume", out, "--config", base)
    assert "vlkge tune --resume" in _bad(capsys, out)
    assert "not a vlkge tune folder" in _bad(capsys, str(tmp_path), "--show")
    assert not (tmp_path / "out").exists()  # nothing was created by a refused command

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert "not empty" in _bad(capsys, "--space", space, "--out", str(foreign), "--trials", "2")

    settings, _ = search_mod.prepare(
        config=base, sets=[], space=space, trials=2, out=out, storage=None, study=None, resume=None
    )
    settings.folder.mkdir()
    settings.save()  # a search folder, as a first run leaves it
    other = str(space_file({"parameters": {"model.dim": [8, 32]}}, "other.yaml"))
    err = _bad(capsys, "--config", base, "--space", other, "--out", out, "--trials", "2")
    assert "holds a search of another config or space (differs in space.parameters" in err
    err = _bad(capsys, "--space", space, "--out", out, "--trials", "2", "--study", "other")
    assert "its study is named 'out', not 'other'" in err
    err = _bad(capsys, "--resume", out, "--storage", "sqlite:////elsewhere/study.db")
    assert "its study is in sqlite:///" in err
    saved = yaml.safe_load((Path(out) / "tune.yaml").read_text())
    assert saved["trials"] == 2 and saved["space"]["parameters"] == {
        "model.dim": {"choices": [8, 16]}
    }
