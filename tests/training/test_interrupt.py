"""Never lose work: a training run killed with SIGKILL, or stopped with Ctrl-C or SIGTERM
(mid-epoch, during validation, between sparse checkpoints), resumes and ends with the metrics of
an uninterrupted run of the same seed, its training time counted over every session; a resume
with an edited config or a trace line cut short is handled; a non-finite loss stops and keeps
the last good checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from vlkge.checkpoint import load_checkpoint
from vlkge.cli import main
from vlkge.config import load_config
from vlkge.errors import Interrupted
from vlkge.training import trainer as trainer_mod
from vlkge.training.run import train

EPOCHS = 12
BATCHES = 15  # 240 training triples in batches of 16


def write_graph(folder: Path, seed: int = 0) -> Path:
    """40 entities, 3 relations; every entity and relation occurs in train."""
    rng = random.Random(seed)
    entities = [f"e{i}" for i in range(40)]
    relations = ["r0", "r1", "r2"]
    triples = {(entities[i], relations[i % 3], entities[(i + 1) % 40]) for i in range(40)}
    while len(triples) < 300:
        head, tail = rng.sample(entities, 2)
        triples.add((head, rng.choice(relations), tail))
    rows = sorted(triples)
    rng.shuffle(rows)
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", rows[:240]), ("valid", rows[240:270]), ("test", rows[270:])):
        (folder / f"{name}.txt").write_text("".join("\t".join(r) + "\n" for r in part))
    return folder


def settings(data: Path, *extra: str) -> list[str]:
    return [
        f"dataset.name={data}",
        "model.backbone=distmult",
        "model.dim=8",
        f"training.epochs={EPOCHS}",
        "training.batch_size=16",
        "training.negatives.num=4",
        "training.progress=false",
        "validation.patience=0",
        "num_threads=1",
        "compile=false",
        "device=cpu",
        "report.after_train=false",
        *extra,
    ]


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def trace(run: Path) -> list[dict]:
    path = run / "trace.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_same_run(run: Path, reference: Path) -> None:
    """Same metrics (to 1e-6), and a trace with every epoch once and the same losses."""
    got = json.loads((run / "metrics.json").read_text())
    want = json.loads((reference / "metrics.json").read_text())
    assert got["best_epoch"] == want["best_epoch"]
    for split in ("valid", "test"):
        for side in ("both", "head", "tail"):
            for key, value in want[split][side].items():
                assert got[split][side][key] == pytest.approx(value, abs=1e-6), (split, side, key)
    resumed, full = trace(run), trace(reference)
    assert [e["epoch"] for e in resumed] == list(range(1, EPOCHS + 1))
    assert [e["loss"] for e in resumed] == pytest.approx([e["loss"] for e in full], abs=1e-9)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_graph(tmp_path_factory.mktemp("graph") / "kg")


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """The uninterrupted run every interrupted one must reproduce."""
    run = tmp_path_factory.mktemp("runs") / "full"
    train(load_config(overrides=settings(data)), run)
    return run


# --- real processes ------------------------------------------------------------------------
def start_training(run: Path, data: Path, tmp_path: Path) -> subprocess.Popen:
    env = dict(os.environ, VLKGE_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "vlkge", "train", "--out", str(run), *sets(settings(data))]
    return subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_epochs(process: subprocess.Popen, run: Path, epochs: int) -> None:
    deadline = time.monotonic() + 120
    # checkpoints are written in the background, after their epoch's trace line
    while len(trace(run)) < epochs or not (run / "checkpoints" / "last.pt").is_file():
        if process.poll() is not None:
            pytest.fail(f"training ended early ({process.returncode}): {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("training did not reach epoch 2 in time")
        time.sleep(0.01)


def test_sigkill_mid_run_resumes_to_the_same_metrics(data, reference, tmp_path, capsys):
    run = tmp_path / "killed"
    process = start_training(run, data, tmp_path)
    wait_for_epochs(process, run, 2)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not (run / "metrics.json").exists()
    saved = load_checkpoint(run / "checkpoints" / "last.pt")["epoch"]
    assert 1 <= saved < EPOCHS  # the trace line of an epoch precedes its checkpoint

    assert main(["train", "--resume", str(run)]) == 0
    assert "run folder" in capsys.readouterr().out
    assert_same_run(run, reference)


def test_ctrl_c_saves_a_checkpoint_and_resumes_to_the_same_metrics(
    data, reference, tmp_path, capsys
):
    run = tmp_path / "interrupted"
    process = start_training(run, data, tmp_path)
    wait_for_epochs(process, run, 2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("vlkge:")] == [lines[-1]]
    assert lines[-1].startswith("vlkge: interrupted: stopped ")
    assert f"resume with `vlkge train --resume {run}`" in lines[-1]
    assert not (run / "metrics.json").exists()
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["epoch"] >= 2

    assert main(["train", "--resume", str(run)]) == 0
    capsys.readouterr()
    assert_same_run(run, reference)


def test_sigterm_saves_a_checkpoint_and_exits_143(data, reference, tmp_path, capsys):
    """A scheduler's stop (`docker stop`, `timeout`) behaves like Ctrl-C, with status 143."""
    run = tmp_path / "terminated"
    process = start_training(run, data, tmp_path)
    wait_for_epochs(process, run, 2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("vlkge:")] == [lines[-1]]
    assert lines[-1].startswith("vlkge: terminated: stopped ")
    assert f"checkpoint saved to {run / 'checkpoints' / 'last.pt'}" in lines[-1]
    assert sum("SIGTERM: stopping after the current batch" in line for line in lines) == 1
    assert not (run / "metrics.json").exists()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] >= 2

    assert main(["train", "--resume", str(run)]) == 0
    capsys.readouterr()
    assert_same_run(run, reference)


# --- Ctrl-C at chosen points, in process -----------------------------------------------------
def interrupt_at(monkeypatch, *calls: int) -> None:
    """Send SIGINT to this process during the given batches (1-based, counted over the run);
    a batch listed twice receives two Ctrl-C."""
    real = trainer_mod.regularization
    count = 0

    def counting(cfg, model, triples):
        nonlocal count
        count += 1
        for _ in range(calls.count(count)):
            signal.raise_signal(signal.SIGINT)
        return real(cfg, model, triples)

    monkeypatch.setattr(trainer_mod, "regularization", counting)


def test_ctrl_c_mid_epoch_finishes_the_batch_and_resumes_exactly(
    data, reference, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    cfg = load_config(overrides=settings(data))
    interrupt_at(monkeypatch, BATCHES + 3)  # the third batch of epoch 2
    before = signal.getsignal(signal.SIGINT)  # default, or ignored under nohup
    with pytest.raises(Interrupted) as info:
        train(cfg, run)
    assert str(info.value).startswith(f"stopped in epoch 2 after 3 of {BATCHES} batches;")
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["epoch"] == 1 and state["partial"]["batches"] == 3
    assert [e["epoch"] for e in trace(run)] == [1]

    monkeypatch.undo()
    train(cfg, run)
    assert_same_run(run, reference)


def test_ctrl_c_during_validation_stops_after_the_epoch(data, reference, tmp_path, monkeypatch):
    from vlkge.evaluation.evaluator import Evaluator

    real, calls = Evaluator.evaluate, []

    def evaluate(self, model, split, progress=False):
        calls.append(split)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)
        return real(self, model, split, progress)

    monkeypatch.setattr(Evaluator, "evaluate", evaluate)
    run = tmp_path / "run"
    cfg = load_config(overrides=settings(data))
    with pytest.raises(Interrupted, match="stopped after epoch 3;"):
        train(cfg, run)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["epoch"] == 3 and state["partial"] is None

    monkeypatch.undo()
    train(cfg, run)
    assert_same_run(run, reference)


def test_ctrl_c_keeps_the_epochs_since_a_sparse_checkpoint(data, reference, tmp_path, monkeypatch):
    run = tmp_path / "run"
    cfg = load_config(overrides=settings(data, "training.checkpoint_every=10"))
    interrupt_at(monkeypatch, 4 * BATCHES + 2)  # epoch 5; the periodic checkpoint is at 10
    with pytest.raises(Interrupted, match="stopped in epoch 5 after 2 of"):
        train(cfg, run)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["epoch"] == 4 and state["partial"]["batches"] == 2

    monkeypatch.undo()
    train(cfg, run)
    assert_same_run(run, reference)


def test_second_ctrl_c_stops_at_once_without_saving(data, reference, tmp_path, monkeypatch):
    run = tmp_path / "run"
    cfg = load_config(overrides=settings(data))
    interrupt_at(monkeypatch, 2 * BATCHES + 5, 2 * BATCHES + 5)  # twice in one batch of epoch 3
    with pytest.raises(Interrupted) as info:
        train(cfg, run)
    message = str(info.value)
    assert message.startswith("stopped at once in epoch 3.")
    assert "The last good checkpoint, after epoch 2, is kept" in message
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and state["partial"] is None

    monkeypatch.undo()
    train(cfg, run)
    assert_same_run(run, reference)


def test_ctrl_c_through_the_cli_is_one_line_and_status_130(data, tmp_path, monkeypatch, capsys):
    interrupt_at(monkeypatch, 7)
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *sets(settings(data))]) == 130
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"vlkge: interrupted: stopped in epoch 1 after 7 of {BATCHES} batches; checkpoint saved "
        f"to {run / 'checkpoints' / 'last.pt'}; resume with `vlkge train --resume {run}`"
    ]


def test_train_time_counts_every_session(data, tmp_path, monkeypatch):
    """metrics.json's train_time_s adds the sessions before a resume to the last one."""
    run = tmp_path / "run"
    cfg = load_config(overrides=settings(data))
    real = trainer_mod.regularization
    count = 0

    def slow_then_stop(cfg, model, triples):  # the first session lasts at least a second
        nonlocal count
        count += 1
        if count == BATCHES + 2:
            time.sleep(1.0)
            signal.raise_signal(signal.SIGINT)
        return real(cfg, model, triples)

    monkeypatch.setattr(trainer_mod, "regularization", slow_then_stop)
    with pytest.raises(Interrupted):
        train(cfg, run)
    first = load_checkpoint(run / "checkpoints" / "last.pt")["train_time"]
    assert first >= 1.0

    monkeypatch.undo()
    start = time.perf_counter()
    metrics = train(cfg, run)
    second = time.perf_counter() - start
    assert first < metrics["train_time_s"] < first + second
    assert json.loads((run / "metrics.json").read_text())["train_time_s"] == metrics["train_time_s"]


@pytest.mark.parametrize(
    "key, value", [("model.backbone", "transe"), ("training.optimizer.lr", 0.05)]
)
def test_resume_refuses_an_edited_config(
    data, reference, tmp_path, monkeypatch, capsys, key, value
):
    """TransE has DistMult's parameter shapes: only the config the checkpoint records tells
    that config.yaml changed. Restored, the run resumes to the uninterrupted run's metrics."""
    run = tmp_path / "run"
    interrupt_at(monkeypatch, BATCHES + 3)
    with pytest.raises(Interrupted):
        train(load_config(overrides=settings(data)), run)
    monkeypatch.undo()
    config = run / "config.yaml"
    original = config.read_text()
    edited = yaml.safe_load(original)
    section, _, leaf = key.rpartition(".")
    node = edited
    for part in section.split("."):
        node = node[part]
    node[leaf] = value
    config.write_text(yaml.safe_dump(edited, sort_keys=False))

    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"vlkge: error: {run / 'checkpoints' / 'last.pt'}: saved by this run before its config "
        f"changed (differs in {key}); restore {config} or start a new run with --out"
    ]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["partial"]["batches"] == 3

    config.write_text(original)
    assert main(["train", "--resume", str(run)]) == 0
    capsys.readouterr()
    assert_same_run(run, reference)


def test_a_trace_line_cut_short_is_skipped_and_repaired(
    data, reference, tmp_path, monkeypatch, capsys, caplog
):
    """A full disk leaves half a line at the end of trace.jsonl: evaluate, report and compare
    read past it with a warning naming the file, and --resume removes it before appending."""
    finished = tmp_path / "finished"
    shutil.copytree(reference, finished)
    trace_path = finished / "trace.jsonl"
    lines = trace_path.read_text().splitlines(keepends=True)
    trace_path.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    caplog.set_level(logging.WARNING)
    for argv in (
        ["evaluate", str(finished)],
        ["report", str(finished), "--samples", "0"],
        ["compare", str(finished), str(reference)],
    ):
        assert main(argv) == 0, capsys.readouterr().err
    assert f"{trace_path}:{EPOCHS}: unreadable trace line skipped" in caplog.text
    assert "11 epochs trained" in (finished / "report.html").read_text()

    run = tmp_path / "run"
    interrupt_at(monkeypatch, 2 * BATCHES + 3)
    with pytest.raises(Interrupted):
        train(load_config(overrides=settings(data)), run)
    monkeypatch.undo()
    with open(run / "trace.jsonl", "a") as handle:
        handle.write('{"epoch": 3, "loss": 0.69')  # cut short, no newline
    assert main(["train", "--resume", str(run)]) == 0
    capsys.readouterr()
    assert_same_run(run, reference)


# --- numerical safety ----------------------------------------------------------------------
def nan_loss_at(monkeypatch, batch: int, value: float = float("nan")) -> None:
    import torch

    real = trainer_mod.regularization
    count = 0

    def poisoned(cfg, model, triples):
        nonlocal count
        count += 1
        return torch.tensor(value) if count == batch else real(cfg, model, triples)

    monkeypatch.setattr(trainer_mod, "regularization", poisoned)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(
    data, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    nan_loss_at(monkeypatch, 2 * BATCHES + 4)  # epoch 3, batch 4
    assert main(["train", "--out", str(run), *sets(settings(data))]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("vlkge: error: non-finite loss (nan) in epoch 3, batch 4; stopped.")
    assert f"after epoch 2, is kept: {run / 'checkpoints' / 'last.pt'}" in err
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and state["partial"] is None
    assert load_checkpoint(run / "checkpoints" / "best.pt")["epoch"] <= 2
    assert not (run / "metrics.json").exists()


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinite_loss_before_any_checkpoint(data, tmp_path, monkeypatch, capsys, value):
    nan_loss_at(monkeypatch, 1, value)
    assert main(["train", "--out", str(tmp_path / "run"), *sets(settings(data))]) == 2
    err = capsys.readouterr().err
    assert f"non-finite loss ({value}) in epoch 1, batch 1" in err
    assert "No checkpoint was written yet" in err and len(err.splitlines()) == 1
