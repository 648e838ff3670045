"""Checkpoints: atomic writes, weights-only reads, and one-line errors for damaged, mismatched
or code-running files."""

from __future__ import annotations

import errno
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from payloads import SYSTEM, RunsCode

from vlkge import checkpoint
from vlkge.checkpoint import (
    MODEL_ENTRIES,
    RESUME_ENTRIES,
    CheckpointWriter,
    load_checkpoint,
    restore_model,
    save_checkpoint,
)
from vlkge.cli import main
from vlkge.errors import VlkgeError
from vlkge.files import DiskFull


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, {"epoch": 1})

    def dies_mid_write(payload, handle):
        handle.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path) == {"epoch": 1}
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_temporary_files_of_a_killed_write_are_cleaned(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / ".last.pt.abc123.tmp").write_bytes(b"left by SIGKILL")
    (folder / ".best.pt.def456.tmp").write_bytes(b"another file's")
    save_checkpoint(folder / "last.pt", {"epoch": 3})
    assert sorted(p.name for p in folder.iterdir()) == [".best.pt.def456.tmp", "last.pt"]


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"\0" * len(b)])
def test_a_damaged_checkpoint_is_one_line(tmp_path, damage):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": torch.nn.Linear(3, 2).state_dict()})
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(VlkgeError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: unreadable checkpoint (") and "\n" not in message


def test_a_checkpoint_of_another_model_is_one_line(tmp_path):
    with pytest.raises(VlkgeError) as info:
        restore_model(torch.nn.Linear(3, 4), torch.nn.Linear(3, 2).state_dict(), tmp_path / "x")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'x'}: does not fit the model") and "\n" not in message
    assert "size mismatch for weight" in message


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    data = root / "toy"
    shutil.copytree(Path(__file__).parent / "bad_inputs" / "_base", data)  # the toy graph
    run = root / "run"
    sets = [f"dataset.name={data}", "model.dim=4", "training.negatives.num=2"]
    sets += ["training.epochs=2", "training.progress=false", "report.after_train=false"]
    sets += ["compile=false", "model.backbone=distmult"]
    assert main(["train", "--out", str(run), *(a for s in sets for a in ("--set", s))]) == 0
    return run


@pytest.mark.parametrize(
    "damage, argv, fragment",
    [
        (
            "truncate best",
            ["evaluate", "{run}"],
            "{run}/checkpoints/best.pt: unreadable checkpoint",
        ),
        ("truncate last", ["train", "--resume", "{run}"], "{run}/checkpoints/last.pt: unreadable"),
        ("wider model", ["evaluate", "{run}"], "{run}/checkpoints/best.pt: does not fit the model"),
        (
            "wider model",
            ["train", "--resume", "{run}"],
            "{run}/checkpoints/last.pt: saved by this run before its config changed (differs in "
            "model.dim)",
        ),
        ("no last", ["evaluate", "{run}", "--checkpoint", "last"], "last.pt: checkpoint not found"),
    ],
)
def test_damaged_run_folders_through_the_cli(finished, tmp_path, capsys, damage, argv, fragment):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    capsys.readouterr()
    if damage.startswith("truncate"):
        path = run / "checkpoints" / f"{damage.split()[1]}.pt"
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "wider model":
        config = run / "config.yaml"
        config.write_text(config.read_text().replace("dim: 4", "dim: 6"))
    else:
        (run / "checkpoints" / "last.pt").unlink()
    assert main([a.format(run=run) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()] and "Traceback" not in err
    assert err.startswith("vlkge: error: ") and fragment.format(run=run) in err


@pytest.mark.parametrize(
    "payload, refused",
    [
        (lambda marker: {"model": {"weight": RunsCode(marker)}}, SYSTEM),
        (lambda marker: RunsCode(marker), SYSTEM),
        # written by a version that kept a numpy number: loading it needs numpy's unpickling
        (lambda marker: {"model": {}, "best": {"metric": np.float64(0.5)}}, "numpy."),
    ],
)
def test_a_checkpoint_that_needs_more_than_weights_is_refused(tmp_path, payload, refused):
    marker = tmp_path / "ran"
    path = tmp_path / "last.pt"
    save_checkpoint(path, payload(marker))
    with pytest.raises(VlkgeError) as info:
        load_checkpoint(path, MODEL_ENTRIES)
    message = str(info.value)
    assert message.startswith(f"{path}: refused to load {refused}") and "\n" not in message
    assert not marker.exists()


@pytest.mark.parametrize(
    "edit, entries, message",
    [
        (lambda state: [state], {}, "not a checkpoint (holds a list)"),
        (lambda state: {"epoch": 2}, MODEL_ENTRIES, "damaged checkpoint: no 'model' entry"),
        (lambda state: {"model": [1]}, MODEL_ENTRIES, "damaged checkpoint: 'model' is a list"),
        (
            lambda state: {"model": {"weight": "w"}},
            MODEL_ENTRIES,
            "damaged checkpoint: 'model.weight' is a str, not a tensor",
        ),
        (
            lambda state: {k: v for k, v in state.items() if k != "optimizer"},
            RESUME_ENTRIES,
            "damaged checkpoint: no 'optimizer' entry",
        ),
        (
            lambda state: {**state, "best": {"epoch": 1}},
            RESUME_ENTRIES,
            "damaged checkpoint: no 'best.metric' entry",
        ),
        (
            lambda state: {**state, "partial": {"batches": 1}},
            RESUME_ENTRIES,
            "damaged checkpoint: no 'partial.generator' entry",
        ),
        (
            lambda state: {**state, "epoch": "2"},
            RESUME_ENTRIES,
            "damaged checkpoint: 'epoch' is a str",
        ),
        # written before the scaler and the partial epoch were saved: still resumable
        (lambda state: {k: v for k, v in state.items() if k not in ("scaler", "partial")}, {}, ""),
    ],
)
def test_missing_or_mistyped_entries_are_one_line(finished, tmp_path, edit, entries, message):
    path = tmp_path / "last.pt"
    save_checkpoint(path, edit(load_checkpoint(finished / "checkpoints" / "last.pt")))
    if not message:
        load_checkpoint(path, RESUME_ENTRIES)
        return
    with pytest.raises(VlkgeError) as info:
        load_checkpoint(path, entries)
    assert str(info.value) == f"{path}: {message}"


def test_last_checkpoint_holds_everything_resume_needs(finished):
    state = load_checkpoint(finished / "checkpoints" / "last.pt", RESUME_ENTRIES)
    assert set(state) >= set(RESUME_ENTRIES) - {"cuda_rng"}
    load_checkpoint(finished / "checkpoints" / "best.pt", MODEL_ENTRIES)


def drop(key):
    return lambda state, marker: {k: v for k, v in state.items() if k != key}


@pytest.mark.parametrize(
    "name, edit, argv, fragment",
    [
        (
            "best",
            lambda state, marker: {**state, "model": RunsCode(marker)},
            ["evaluate", "{run}"],
            f"{{run}}/checkpoints/best.pt: refused to load {SYSTEM}, which could run code",
        ),
        (
            "last",
            lambda state, marker: {**state, "partial": RunsCode(marker)},
            ["train", "--resume", "{run}"],
            f"{{run}}/checkpoints/last.pt: refused to load {SYSTEM}, which could run code",
        ),
        (
            "last",
            lambda state, marker: {**state, "model": RunsCode(marker)},
            ["evaluate", "{run}", "--checkpoint", "last"],
            f"{{run}}/checkpoints/last.pt: refused to load {SYSTEM}",
        ),
        (
            "best",
            drop("model"),
            ["evaluate", "{run}"],
            "{run}/checkpoints/best.pt: damaged checkpoint: no 'model' entry",
        ),
        (
            "last",
            drop("optimizer"),
            ["train", "--resume", "{run}"],
            "{run}/checkpoints/last.pt: damaged checkpoint: no 'optimizer' entry",
        ),
        (
            "last",
            lambda state, marker: {**state, "generator": torch.zeros(3, dtype=torch.uint8)},
            ["train", "--resume", "{run}"],
            "{run}/checkpoints/last.pt: cannot restore the training state (RuntimeError",
        ),
        (
            "last",
            lambda state, marker: {**state, "optimizer": {"state": {}, "param_groups": []}},
            ["train", "--resume", "{run}"],
            "{run}/checkpoints/last.pt: cannot restore the training state (ValueError",
        ),
    ],
)
def test_damaged_checkpoints_through_the_cli(
    finished, tmp_path, capsys, name, edit, argv, fragment
):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    path = run / "checkpoints" / f"{name}.pt"
    marker = tmp_path / "ran"
    save_checkpoint(path, edit(load_checkpoint(path), marker))
    capsys.readouterr()
    assert main([a.format(run=run) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [err.strip()] and "Traceback" not in err
    assert err.startswith("vlkge: error: ") and fragment.format(run=run) in err
    assert not marker.exists()


def test_sharded_checkpoints_are_assembled_and_checked(tmp_path):
    """A manifest's tables are the concatenation of its shard files, in rank order; a shard
    named outside the folder, or shards that do not fit together, are one line."""
    path = tmp_path / "best.pt"
    table = torch.arange(12.0).reshape(6, 2)
    names = [checkpoint.shard_file(path, "e1", k, 2).name for k in range(2)]
    for k, name in enumerate(names):
        save_checkpoint(tmp_path / name, {"model": {"table": table[3 * k : 3 * k + 3]}})
    manifest = {"model": {}, "shards": {"world": 2, "keys": ["table"], "files": names}}
    assert torch.equal(checkpoint.whole_model(path, manifest)["table"], table)
    outside = {**manifest, "shards": {**manifest["shards"], "files": ["../x.pt", names[1]]}}
    with pytest.raises(VlkgeError, match="outside its folder"):
        checkpoint.whole_model(path, outside)
    save_checkpoint(tmp_path / names[1], {"model": {"table": torch.zeros(3, 5)}})
    with pytest.raises(VlkgeError, match="the shards of 'table' do not fit"):
        checkpoint.whole_model(path, manifest)


# --- the background writer -------------------------------------------------------------------
def test_the_writer_keeps_the_submitted_state_and_the_order(tmp_path, monkeypatch):
    release, real, written = threading.Event(), checkpoint.torch.save, []

    def slow(payload, handle):
        release.wait(10)
        written.append(int(payload["epoch"]))
        real(payload, handle)

    monkeypatch.setattr(checkpoint.torch, "save", slow)
    writer, table = CheckpointWriter(), torch.zeros(3)
    writer.submit(tmp_path / "last.pt", {"epoch": 1, "model": {"w": table}})
    table += 1  # training goes on while the file is written: the file keeps the old values
    writer.submit(tmp_path / "best.pt", {"epoch": 2, "model": {"w": table}})
    assert written == []  # both submits returned with the first write still blocked
    release.set()
    writer.wait()
    assert written == [1, 2]
    assert torch.equal(load_checkpoint(tmp_path / "last.pt")["model"]["w"], torch.zeros(3))
    assert torch.equal(load_checkpoint(tmp_path / "best.pt")["model"]["w"], torch.ones(3))


def test_a_failed_background_write_is_raised_once(tmp_path, monkeypatch):
    def fails(payload, handle):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    writer = CheckpointWriter()
    monkeypatch.setattr(checkpoint.torch, "save", fails)
    writer.submit(tmp_path / "last.pt", {"epoch": 1})
    with pytest.raises(DiskFull, match="last.pt: not written, the disk is full"):
        writer.wait()
    writer.wait()  # reported: nothing left to raise
    writer.submit(tmp_path / "last.pt", {"epoch": 2})
    writer.settle()  # waits, the error dropped (a message about another error reads the files)
    monkeypatch.undo()
    writer.submit(tmp_path / "last.pt", {"epoch": 3})
    writer.wait()
    assert load_checkpoint(tmp_path / "last.pt") == {"epoch": 3}
