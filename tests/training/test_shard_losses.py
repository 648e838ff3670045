"""The sharded losses equal the one-process losses, value and gradient, on one rank."""

from __future__ import annotations

import launch
import pytest
import torch
import torch.nn.functional as F

from vlkge.training import shard_losses

pytest.importorskip("torch.distributed.run")


@pytest.fixture
def group():
    with launch.one_rank_group():
        yield


def test_sharded_softmax_and_bce_equal_the_whole_losses(group):
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(4, 7, generator=generator, requires_grad=True)
    answers = torch.tensor([0, 3, 3, 6])
    rows, ones = torch.arange(4), torch.ones(4)
    cases = [
        ("ce", F.cross_entropy(scores, answers, label_smoothing=0.1), ones),
        ("bce", F.binary_cross_entropy_with_logits(scores, F.one_hot(answers, 7).float()), ones),
    ]
    # multi-hot targets: each row's answers share its weight (KvsAll)
    multi = torch.zeros(4, 7)
    multi[rows, answers] = 1.0
    multi[0, 5] = multi[2, 1] = 1.0
    hit_rows, hit_cols = multi.nonzero().unbind(1)
    share = (1.0 / multi.sum(1))[hit_rows]
    whole = F.cross_entropy(scores, multi / multi.sum(1, keepdim=True), label_smoothing=0.1)
    cases.append(("ce", whole, share))
    for loss, expected, weights in cases:
        r, c = (rows, answers) if len(weights) == 4 else (hit_rows, hit_cols)
        smoothing = 0.1 if loss == "ce" else 0.0
        got = shard_losses.LOSSES[loss](scores, r, c, weights, smoothing)
        (want_grad,) = torch.autograd.grad(expected, scores)
        (got_grad,) = torch.autograd.grad(got, scores)
        torch.testing.assert_close(got, expected)
        torch.testing.assert_close(got_grad, want_grad)
