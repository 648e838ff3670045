"""Data-parallel training under torchrun: two gloo processes on loopback reach the metrics of
one process with the same global batch, only rank 0 writes the run folder, and a 2-rank run
resumes exactly."""

from __future__ import annotations

import json
import subprocess

import launch
import pytest
import yaml

from vlkge.config import load_config
from vlkge.training.run import train

pytest.importorskip("torch.distributed.run")

SETTINGS = [
    "dataset.name=nations",
    "model.backbone=distmult",
    "model.dim=16",
    "training.batch_size=200",
    "training.negatives.num=4",
    "training.epochs=4",
    "training.progress=false",
    "evaluation.splits=[valid]",
    "report.after_train=false",
    "tracking.tensorboard=false",
    "num_threads=1",
]


def torchrun(*args: str) -> subprocess.CompletedProcess:
    return launch.torchrun("-m", "vlkge", *args)


def sets(settings) -> list[str]:
    return [arg for s in settings for arg in ("--set", s)]


def valid_mrr(run_dir) -> float:
    return json.loads((run_dir / "metrics.json").read_text())["valid"]["both"]["mrr"]


def test_two_ranks_match_one_and_resume(tmp_path):
    single = train(load_config(overrides=SETTINGS), tmp_path / "one")
    done = torchrun("train", *sets(SETTINGS), "--out", str(tmp_path / "two"))
    assert done.stdout.count("run folder:") == 1  # rank 0 alone reports
    two = tmp_path / "two"
    assert abs(valid_mrr(two) - single["valid"]["both"]["mrr"]) < 1e-4
    trace = [json.loads(line) for line in (two / "trace.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in trace] == [1, 2, 3, 4]  # one writer, no duplicate lines
    one_trace = (tmp_path / "one" / "trace.jsonl").read_text().splitlines()
    for mine, theirs in zip(trace, map(json.loads, one_trace), strict=True):
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-4)

    # a 2-rank run stopped after epoch 2, resumed by 2 ranks, ends where the whole run did
    part = tmp_path / "part"
    torchrun("train", *sets([*SETTINGS, "training.epochs=2"]), "--out", str(part))
    saved = yaml.safe_load((part / "config.yaml").read_text())
    saved["training"]["epochs"] = 4
    (part / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    torchrun("train", "--resume", str(part))
    assert valid_mrr(part) == pytest.approx(valid_mrr(two), abs=1e-6)
