"""The worker's epoch callback: each validation reported to the study at its epoch, the pruner's
decision returned to the trainer, and a resumed trial's checkpointed epochs reported again."""

from __future__ import annotations

import torch

from vlkge.checkpoint import save_checkpoint
from vlkge.training.tracking import append_trace
from vlkge.tuning.worker import Reporter


class FakeTrial:
    def __init__(self, prune_at: int | None = None):
        self.reports: list[tuple[int, float]] = []
        self.prune_at = prune_at

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))

    def should_prune(self) -> bool:
        return self.reports[-1][0] == self.prune_at


def entry(epoch: int, valid: float | None = None) -> dict:
    out = {"epoch": epoch, "loss": 1.0}
    if valid is not None:
        out["valid"] = {"mrr": valid, "hits@10": 0.9}
    return out


def test_reports_and_prunes(tmp_path):
    trial = FakeTrial(prune_at=4)
    reporter = Reporter(trial, "mrr", tmp_path / "run")
    assert reporter(entry(1, 0.2)) is False
    assert reporter(entry(2)) is False  # not validated this epoch: nothing to report
    assert reporter(entry(4, 0.3)) is True and reporter.pruned
    assert trial.reports == [(1, 0.2), (4, 0.3)] and reporter.epochs == 4


def test_a_resumed_trial_reports_its_checkpointed_epochs(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for epoch, valid in ((1, 0.2), (2, 0.25), (3, 0.3)):
        append_trace(run / "trace.jsonl", entry(epoch, valid))
    # killed after epoch 3's trace line, before its checkpoint: epoch 3 is trained again
    save_checkpoint(run / "checkpoints" / "last.pt", {"epoch": 2, "model": {"w": torch.zeros(1)}})
    trial = FakeTrial()
    reporter = Reporter(trial, "mrr", run)
    assert trial.reports == [(1, 0.2), (2, 0.25)] and reporter.epochs == 2
