"""Files written whole or not at all: a full disk while writing a checkpoint, the trace or the
config is one line naming the file (exit status 2), and what was saved before stays usable."""

from __future__ import annotations

import errno
import json
import os

import pytest

from vlkge import checkpoint
from vlkge.checkpoint import load_checkpoint
from vlkge.cli import main
from vlkge.files import DiskFull, atomic_write, write_text
from vlkge.training import tracking

FULL = "not written, the disk is full (no space left on device)"


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_keeps_the_previous_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_text(path, "old")
    with pytest.raises(DiskFull) as info, atomic_write(path) as handle:
        handle.write("half of the new")
        disk_full()
    assert str(info.value) == f"{path}: {FULL}"
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_other_errors_pass_unchanged(tmp_path):
    with pytest.raises(PermissionError), atomic_write(tmp_path / "x"):
        raise PermissionError(errno.EACCES, "denied")
    assert list(tmp_path.iterdir()) == []


# --- through the CLI -------------------------------------------------------------------------
SETTINGS = [
    "model.backbone=distmult",
    "model.dim=4",
    "training.negatives.num=2",
    "training.epochs=4",
    "training.progress=false",
    "report.after_train=false",
    "compile=false",
    "device=cpu",
    "num_threads=1",
]


@pytest.fixture
def argv(toy_dir, tmp_path) -> list[str]:
    sets = [f"dataset.name={toy_dir}", *SETTINGS]
    return ["train", "--out", str(tmp_path / "run"), *(a for s in sets for a in ("--set", s))]


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def test_full_disk_during_a_checkpoint_keeps_the_last_one(argv, tmp_path, monkeypatch, capsys):
    run, real = tmp_path / "run", checkpoint.torch.save

    def fills_up(payload, handle):
        if payload["epoch"] == 3 and "optimizer" in payload:  # last.pt after epoch 3
            handle.write(b"part of a checkpoint")
            disk_full()
        real(payload, handle)

    monkeypatch.setattr(checkpoint.torch, "save", fills_up)
    assert main(argv) == 2
    last = run / "checkpoints" / "last.pt"
    # writes run in the background: the failed write is noticed at the next submit, or, on a
    # loaded machine where it has not failed yet by then, with epoch 4's last.pt written
    done = load_checkpoint(last)["epoch"]
    assert done in (2, 4)
    assert one_line(capsys) == (
        f"vlkge: error: {last}: {FULL}. The last good checkpoint, after epoch {done}, is kept: "
        f"{last}; free some space, then resume with `vlkge train --resume {run}`"
    )
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.pt", "last.pt"]

    monkeypatch.undo()
    assert main(["train", "--resume", str(run)]) == 0
    assert json.loads((run / "metrics.json").read_text())["best_epoch"] >= 1


def test_full_disk_during_a_trace_write_then_resume(argv, tmp_path, monkeypatch, capsys):
    """The disk fills up in the middle of epoch 3's line; the resume repairs the trace."""
    run, calls = tmp_path / "run", []

    class FillsUp:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, text):
            calls.append(text)
            if len(calls) == 3:
                self.handle.write(text[:10])
                disk_full()
            self.handle.write(text)

    monkeypatch.setattr(tracking, "open", lambda *a, **k: FillsUp(open(*a, **k)), raising=False)
    assert main(argv) == 2
    trace = run / "trace.jsonl"
    assert one_line(capsys).startswith(f"vlkge: error: {trace}: {FULL}. The last good checkpoint")
    assert trace.read_text().count("\n") == 2 and not trace.read_text().endswith("\n")

    monkeypatch.undo()
    assert main(["train", "--resume", str(run)]) == 0
    lines = trace.read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]


def test_full_disk_writing_the_config_at_start(argv, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    monkeypatch.setattr(os, "fsync", disk_full)
    assert main(argv) == 2
    assert one_line(capsys) == f"vlkge: error: {run / 'config.yaml'}: {FULL}"
    assert not (run / "config.yaml").exists() and not (run / "checkpoints").exists()

    monkeypatch.undo()
    assert main(argv) == 0  # nothing left behind blocks the same command
