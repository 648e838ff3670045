"""Training end to end on Nations: regimes learn, seeds repeat, resumption is exact,
early stopping and non-finite losses behave."""

import json

import pytest
import torch

from vlkge.config import load_config
from vlkge.errors import VlkgeError
from vlkge.training.run import train

FAST = [
    "dataset.name=nations",
    "model.dim=16",
    "training.batch_size=256",
    "training.negatives.num=4",
    "training.progress=false",
]


def cfg(*extra):
    return load_config(overrides=[*FAST, *extra])


@pytest.mark.parametrize(
    "extra",
    [
        ["model.backbone=distmult", "training.epochs=8"],
        ["model.backbone=transe", "training.epochs=8", "model.gamma=2.0"],
        [
            "model.backbone=rotate",
            "training.epochs=8",
            "training.loss=self_adversarial",
            "training.optimizer.name=adam",
            "training.optimizer.lr=0.01",
        ],
        [
            "model.backbone=complex",
            "training.epochs=8",
            "training.regime=1vsall",
            "training.loss=ce",
            "model.reciprocal=true",
            "training.optimizer.name=adam",
            "training.optimizer.lr=0.01",
            "training.regularizer.name=n3",
            "training.regularizer.weight=0.001",
        ],
        [
            "model.backbone=distmult",
            "training.epochs=8",
            "training.regime=kvsall",
            "training.loss=bce",
            "training.optimizer.name=adam",
            "training.optimizer.lr=0.01",
            "training.regularizer.name=l2",
            "training.regularizer.weight=0.0001",
        ],
    ],
)
def test_regimes_learn(tmp_path, extra):
    metrics = train(cfg(*extra), tmp_path / "run")
    trace = [
        json.loads(line) for line in (tmp_path / "run" / "trace.jsonl").read_text().splitlines()
    ]
    assert len(trace) == 8 and trace[-1]["loss"] < trace[0]["loss"]
    # Nations has 14 entities: a random ranking gives MRR about 0.25
    assert metrics["test"]["both"]["mrr"] > 0.35
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_same_seed_same_result(tmp_path):
    a = train(cfg("training.epochs=3"), tmp_path / "a")
    b = train(cfg("training.epochs=3"), tmp_path / "b")
    assert a["test"] == b["test"]


def test_resume_reproduces_uninterrupted_run(tmp_path):
    full = train(cfg("training.epochs=4", "validation.patience=0"), tmp_path / "full")
    train(cfg("training.epochs=2", "validation.patience=0"), tmp_path / "split")
    # extend the same run folder: same config apart from epochs, so rewrite its config
    (tmp_path / "split" / "config.yaml").unlink()
    resumed = train(cfg("training.epochs=4", "validation.patience=0"), tmp_path / "split")
    assert resumed["test"] == full["test"]
    lines = (tmp_path / "split" / "trace.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4]


def test_early_stopping(tmp_path):
    train(
        cfg("training.epochs=40", "validation.patience=2", "training.optimizer.lr=5.0"),
        tmp_path / "r",
    )
    epochs = len((tmp_path / "r" / "trace.jsonl").read_text().splitlines())
    assert epochs < 40


def test_non_finite_loss_stops_with_message(tmp_path, monkeypatch):
    from vlkge.training import losses

    monkeypatch.setattr(losses, "logistic", lambda pos, neg: torch.tensor(float("nan")))
    with pytest.raises(VlkgeError, match="non-finite loss"):
        train(cfg("training.epochs=2"), tmp_path / "r")


def test_changed_config_in_existing_run_folder_is_refused(tmp_path):
    train(cfg("training.epochs=1"), tmp_path / "r")
    with pytest.raises(VlkgeError, match="another config"):
        train(cfg("training.epochs=1", "model.dim=8"), tmp_path / "r")


def test_an_epoch_callback_stops_the_run(tmp_path):
    seen = []

    def stop_after_three(entry: dict) -> bool:
        seen.append(entry["epoch"])
        assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()  # saved before the call
        return entry["epoch"] == 3

    metrics = train(cfg("training.epochs=8"), tmp_path / "run", on_epoch=stop_after_three)
    assert seen == [1, 2, 3] and metrics["best_epoch"] <= 3
    assert len((tmp_path / "run" / "trace.jsonl").read_text().splitlines()) == 3
    assert {"valid", "test"} <= set(metrics)  # a stopped run still ends like any other
