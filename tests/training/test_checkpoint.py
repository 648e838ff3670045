"""Checkpoints: atomic writes, and one-line errors for damaged or mismatched files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from vlkge.cli import main
from vlkge.errors import VlkgeError
from vlkge.training import checkpoint
from vlkge.training.checkpoint import load_checkpoint, restore_model, save_checkpoint


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
    shutil.copytree(Path(__file__).parents[1] / "bad_inputs" / "_base", data)  # the toy graph
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
