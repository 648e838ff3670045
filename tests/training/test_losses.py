"""Losses against direct formulas."""

import math

import torch

from vlkge.training import losses


def test_logistic_is_mean_over_all_labels():
    pos, neg = torch.tensor([1.0, -2.0]), torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    terms = [math.log1p(math.exp(-p)) for p in pos.tolist()] + [
        math.log1p(math.exp(n)) for n in neg.flatten().tolist()
    ]
    assert math.isclose(losses.logistic(pos, neg).item(), sum(terms) / len(terms), rel_tol=1e-6)


def test_self_adversarial_weights_hard_negatives():
    pos, neg = torch.tensor([1.0]), torch.tensor([[3.0, -3.0]])
    w = torch.softmax(neg, -1)
    expected = (
        -(
            torch.nn.functional.logsigmoid(pos).mean()
            + (w * torch.nn.functional.logsigmoid(-neg)).sum()
        )
        / 2
    )
    assert torch.isclose(losses.self_adversarial(pos, neg, 1.0), expected)


def test_cross_entropy_multi_hot_targets_are_normalised():
    scores = torch.tensor([[1.0, 2.0, 3.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0]])
    logp = torch.log_softmax(scores, -1)
    assert torch.isclose(losses.cross_entropy(scores, targets), -(logp[0, 0] + logp[0, 2]) / 2)
    assert torch.isclose(losses.cross_entropy(scores, torch.tensor([2])), -logp[0, 2])


def test_bce_label_smoothing():
    scores, targets = torch.zeros(1, 4), torch.tensor([[1.0, 0, 0, 0]])
    assert torch.isclose(losses.bce(scores, targets, 0.2), torch.tensor(math.log(2)))
