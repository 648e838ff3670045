"""TensorBoard event files beside trace.jsonl: the same numbers, resumption included, and the
switch that turns them off."""

from __future__ import annotations

import json

import pytest

from vlkge.config import load_config
from vlkge.errors import ConfigError
from vlkge.training import tracking
from vlkge.training.run import train

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)

FAST = [
    "dataset.name=nations",
    "model.dim=4",
    "training.negatives.num=2",
    "training.negatives.filter_splits=[]",
    "training.batch_size=512",
    "training.progress=false",
    "validation.patience=0",
    "evaluation.splits=[valid]",
    "compile=false",
    "report.after_train=false",
]


def scalars(run_dir, tag: str) -> dict[int, float]:
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {e.step: e.value for e in events.Scalars(tag)}


def test_event_files_match_the_trace_across_a_resume(tmp_path):
    run = tmp_path / "run"
    train(load_config(overrides=[*FAST, "training.epochs=2"]), run)
    (run / "config.yaml").unlink()  # extend the run: same config apart from epochs
    train(load_config(overrides=[*FAST, "training.epochs=3"]), run)
    trace = [json.loads(line) for line in (run / "trace.jsonl").read_text().splitlines()]
    loss = scalars(run, "train/loss")
    assert sorted(loss) == [1, 2, 3]
    for entry in trace:
        assert loss[entry["epoch"]] == pytest.approx(entry["loss"], rel=1e-6)
    mrr = scalars(run, "valid/mrr")
    assert mrr[3] == pytest.approx(trace[-1]["valid"]["mrr"], rel=1e-6)
    assert sorted(scalars(run, "time/train_s")) == [1, 2, 3]


def test_tensorboard_off_and_required(tmp_path, monkeypatch):
    train(
        load_config(overrides=[*FAST, "training.epochs=1", "tracking.tensorboard=false"]),
        tmp_path / "r",
    )
    assert not (tmp_path / "r" / "tensorboard").exists()
    monkeypatch.setattr(tracking, "tensorboard_available", lambda: False)
    board = tracking.TensorBoardLog(tmp_path / "auto", "auto")
    board.log({"epoch": 1, "loss": 1.0, "train_time": 0.1})  # silently nothing
    assert board.writer is None and not (tmp_path / "auto").exists()
    with pytest.raises(ConfigError, match="needs the tensorboard package"):
        tracking.TensorBoardLog(tmp_path / "x", True)
