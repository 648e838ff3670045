"""Run folders: one training process at a time, nothing overwritten that is not a run's, a
failed start that never blocks the fixed rerun, and paths that work from any folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlkge.cli import main
from vlkge.config import load_config
from vlkge.runfolder import CHECKPOINTS, absolute_paths, checkpoint_path, run_lock
from vlkge.training import trainer as trainer_mod

SETTINGS = [
    "model.backbone=distmult",
    "model.dim=4",
    "training.negatives.num=2",
    "training.epochs=3",
    "training.progress=false",
    "report.after_train=false",
    "compile=false",
    "device=cpu",
    "num_threads=1",
]


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def one_line_error(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines[-1].startswith("vlkge: error: "), err
    assert sum(line.startswith("vlkge:") for line in lines) == 1
    for fragment in fragments:
        assert fragment in lines[-1]
    return lines[-1]


# --- one process at a time -------------------------------------------------------------------
def vlkge(tmp_path: Path, *argv: str, **kwargs):
    env = dict(os.environ, VLKGE_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "vlkge", *argv]
    return subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_a_second_process_is_refused_while_the_first_trains(toy_dir, tmp_path):
    run = tmp_path / "run"
    long = sets(
        [f"dataset.name={toy_dir}", *SETTINGS, "training.epochs=1000000", "validation.every=0"]
    )
    first = vlkge(tmp_path, "train", "--out", str(run), *long)
    try:
        deadline = time.monotonic() + 120
        while not (run / "trace.jsonl").is_file() or not (run / "trace.jsonl").read_text():
            assert first.poll() is None, first.communicate()[1]
            assert time.monotonic() < deadline, "training did not start in time"
            time.sleep(0.05)
        for argv in (["train", "--out", str(run), *long], ["train", "--resume", str(run)]):
            second = vlkge(tmp_path, *argv)
            _, err = second.communicate(timeout=120)
            assert second.returncode == 2, err
            assert err.splitlines() == [
                f"vlkge: error: {run}: another vlkge process is writing to this run folder; "
                "wait for it to end or use another --out folder"
            ]
        assert first.poll() is None  # undisturbed
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
        assert first.returncode == 143
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    with run_lock(run):  # released by the process that ended
        pass


# --- what --out may overwrite ----------------------------------------------------------------
@pytest.mark.parametrize("stray", ["metrics.json", "trace.jsonl"])
def test_a_folder_that_is_not_a_run_folder_is_not_overwritten(toy_dir, tmp_path, capsys, stray):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / stray).write_text("someone else's\n")
    assert main(["train", "--out", str(folder), *sets([f"dataset.name={toy_dir}", *SETTINGS])]) == 2
    one_line_error(capsys, f"{folder}: not a vlkge run folder (it holds {stray} but no config.yaml")
    assert sorted(p.name for p in folder.iterdir() if p.name != ".lock") == [stray]
    assert (folder / stray).read_text() == "someone else's\n"


def test_a_bad_dataset_leaves_nothing_that_blocks_the_fixed_rerun(toy_dir, tmp_path, capsys):
    run = tmp_path / "run"
    train_file = toy_dir / "train.txt"
    good = train_file.read_text()
    train_file.write_text(good + "a\tlikes\n")
    argv = ["train", "--out", str(run), *sets([f"dataset.name={toy_dir}", *SETTINGS])]
    assert main(argv) == 2
    one_line_error(capsys, f"{train_file}:7:")
    assert not (run / "config.yaml").exists()

    train_file.write_text(good)
    assert main(argv) == 0
    assert (run / "metrics.json").is_file()


def test_a_run_without_a_checkpoint_takes_a_fixed_config(toy_dir, tmp_path, monkeypatch, capsys):
    """A run stopped in its first epoch saved no results: the same folder reruns with another
    config; once it has results, another config is refused."""
    import torch

    run = tmp_path / "run"
    base = [f"dataset.name={toy_dir}", *SETTINGS]
    monkeypatch.setattr(trainer_mod, "regularization", lambda *a: torch.tensor(float("nan")))
    assert main(["train", "--out", str(run), *sets(base)]) == 2
    one_line_error(capsys, "non-finite loss", "No checkpoint was written yet")
    assert (run / "config.yaml").is_file()

    monkeypatch.undo()
    assert main(["train", "--out", str(run), *sets([*base, "training.optimizer.lr=0.01"])]) == 0
    assert load_config(run / "config.yaml")["training"]["optimizer"]["lr"] == 0.01
    capsys.readouterr()
    assert main(["train", "--out", str(run), *sets([*base, "training.optimizer.lr=0.02"])]) == 2
    one_line_error(capsys, "holds a run with another config (differs in training.optimizer.lr)")


# --- paths that travel -----------------------------------------------------------------------
def test_absolute_paths(tmp_path, monkeypatch, toy_dir):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "clip").mkdir(parents=True)
    cfg = load_config(
        overrides=[
            "dataset.name=toy",
            "dataset.data_dir=data",
            "features.cache_dir=~/cache",
            "report.zero_shot=../zs",
            "encoder.name=models/clip",
        ]
    )
    out = absolute_paths(cfg)
    assert out["dataset"]["name"] == str(toy_dir)
    assert out["dataset"]["data_dir"] == str(tmp_path / "data")  # made absolute, present or not
    assert out["features"]["cache_dir"] == str(Path("~/cache").expanduser())
    assert out["report"]["zero_shot"] == str(tmp_path.parent / "zs")
    assert out["encoder"]["name"] == str(tmp_path / "models" / "clip")
    assert cfg["dataset"]["name"] == "toy"  # a copy

    (tmp_path / "nations").mkdir()
    (tmp_path / "minilm").mkdir()
    names = load_config(overrides=["dataset.name=nations", "encoder.name=minilm"])
    assert absolute_paths(names) == names  # a named dataset and a model name, not the folders
    hub = load_config(overrides=["dataset.name=no/such/folder", "encoder.name=openai/clip-vit"])
    assert absolute_paths(hub) == hub


def test_require_run_folder_messages(tmp_path, capsys):
    for argv in (["evaluate", str(tmp_path / "none")], ["train", "--resume", str(tmp_path)]):
        assert main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"vlkge: error: {tmp_path / 'none'}: no such run folder",
        f"vlkge: error: {tmp_path}: not a run folder (no config.yaml)",
    ]


def test_checkpoint_paths_name_the_files_the_trainer_writes(tmp_path):
    assert [checkpoint_path(tmp_path, n).name for n in CHECKPOINTS] == ["best.pt", "last.pt"]
    assert checkpoint_path(tmp_path) == tmp_path / "checkpoints" / "best.pt"
