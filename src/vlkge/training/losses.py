"""Losses for the two training families.

Negative sampling: ``pos [B]`` and ``neg [B, N]`` scores. 1-vs-all / k-vs-all: ``scores [B, E]``
against ``targets [B, E]`` (multi-hot) or ``[B]`` (one index per row).

Scores are taken as float32 (mixed-precision scores are cast up; float32 ones are unchanged)
so that a loss is summed in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vlkge.models.model import KGEModel


def logistic(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """mean log(1 + exp(-y f)) over all positives (y=+1) and negatives (y=-1), as in VL-KGE."""
    pos, neg = pos.float(), neg.float()
    total = F.softplus(-pos).sum() + F.softplus(neg).sum()
    return total / (pos.numel() + neg.numel())


def self_adversarial(pos: torch.Tensor, neg: torch.Tensor, temperature: float) -> torch.Tensor:
    """RotatE's loss: negatives weighted by softmax(alpha * score), weights not back-propagated."""
    pos, neg = pos.float(), neg.float()
    weights = torch.softmax(temperature * neg.detach(), dim=-1)
    positive = F.logsigmoid(pos).mean()
    negative = (weights * F.logsigmoid(-neg)).sum(-1).mean()
    return -(positive + negative) / 2


def bce(scores: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Binary cross-entropy of every candidate; ``targets`` multi-hot ``[B, E]``."""
    scores, targets = scores.float(), targets.float()
    if smoothing:
        targets = targets * (1.0 - smoothing) + smoothing / targets.shape[1]
    return F.binary_cross_entropy_with_logits(scores, targets)


def cross_entropy(
    scores: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    """Softmax cross-entropy; ``targets`` are indices ``[B]`` or multi-hot rows ``[B, E]``
    (normalised into a distribution over the true answers)."""
    scores = scores.float()
    if targets.dim() == 2:
        targets = targets.float() / targets.sum(1, keepdim=True).clamp_min(1)
    return F.cross_entropy(scores, targets, label_smoothing=smoothing)


#: ``training.regularizer.name`` -> the power of the norm it sums
REGULARIZER_POWERS = {"n3": 3, "l2": 2}


def regularization(cfg: dict, model: KGEModel, triples: torch.Tensor) -> torch.Tensor | None:
    """N3 (sum |x|^3) or L2 (sum x^2) of the batch's embeddings, divided by the batch size."""
    reg = cfg["training"]["regularizer"]
    if reg["name"] == "none" or reg["weight"] == 0:
        return None
    power = REGULARIZER_POWERS[reg["name"]]
    h, r, t = triples.unbind(-1)
    vectors = (model.entities(h), model.relations(r), model.entities(t))
    total = sum(v.abs().pow(power).sum() for v in vectors)
    return reg["weight"] * total / max(len(triples), 1)
