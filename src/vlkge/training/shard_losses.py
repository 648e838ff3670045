"""The losses of the whole-batch regimes (1-vs-all, KvsAll) when the entity tables are sharded
(:mod:`vlkge.training.sharded`, docs/scaling.md, "Sharded entity tables"): each rank scores the
whole batch against its own entities only; the log-sum-exp and the target scores are summed
across ranks, so the loss is exactly the one-process loss, and each rank's gradient is its
entities' share of the one-process gradient. :data:`LOSSES` maps ``training.loss`` to them."""

from __future__ import annotations

import torch

from vlkge import distributed


def inside(ids: torch.Tensor, shard: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions of the ``ids`` that fall in this rank's entities, and their columns there."""
    lo, hi = shard
    kept = ((ids >= lo) & (ids < hi)).nonzero().squeeze(1)
    return kept, ids[kept] - lo


def _combined(local: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """A loss whose value is ``value`` (the same on every rank) and whose gradient is that of
    ``local`` times the number of ranks: the trainer weights a whole-batch rank's loss by
    ``1 / world`` (it also scales the regulariser, which every rank computes in full), so the
    gradient that remains is ``local``'s, this rank's exact share."""
    world = distributed.world_size()
    return world * (local - local.detach()) + value


def softmax_loss(scores, rows, cols, weights, smoothing: float) -> torch.Tensor:
    """Softmax cross-entropy of ``[B, n]`` scores of this rank's entities: the targets are
    ``(rows, cols)`` with ``weights`` (each row's weights sum to 1 over all ranks), label
    smoothing spreads ``smoothing`` over every entity, as ``torch.nn.functional.
    cross_entropy`` does. Its gradient is ``(softmax - q) / B`` on this rank's columns."""
    scores = scores.float()
    entities = distributed.all_reduce(torch.tensor(float(scores.shape[1]), device=scores.device))
    with torch.no_grad():
        top = distributed.all_reduce(scores.max(1).values, "max")
        lse = top + distributed.all_reduce(torch.exp(scores - top[:, None]).sum(1)).log()
        target = torch.zeros_like(lse).index_add_(0, rows, weights * scores[rows, cols])
        target = distributed.all_reduce(target)
        mean = distributed.all_reduce(scores.sum(1)) / entities
        value = (lse - (1 - smoothing) * target - smoothing * mean).mean()
        wanted = torch.zeros_like(scores).index_put_(
            (rows, cols), (1 - smoothing) * weights, accumulate=True
        )
        wanted += smoothing / entities
        direction = torch.exp(scores - lse[:, None]) - wanted
    return _combined((direction * scores).sum() / len(scores), value)


def bce_loss(scores, rows, cols, weights, smoothing: float) -> torch.Tensor:
    """Binary cross-entropy, the mean over every (query, entity) of all ranks: targets 1 at
    ``(rows, cols)`` (``weights`` unused), smoothed toward ``smoothing / E``."""
    scores = scores.float()
    entities = distributed.all_reduce(torch.tensor(float(scores.shape[1]), device=scores.device))
    targets = torch.zeros_like(scores)
    targets[rows, cols] = 1.0
    if smoothing:
        targets = targets * (1.0 - smoothing) + smoothing / entities
    terms = torch.nn.functional.binary_cross_entropy_with_logits(scores, targets, reduction="sum")
    local = terms / (len(scores) * entities)
    return _combined(local, distributed.all_reduce(local.detach().clone()))


#: ``training.loss`` -> the sharded loss of the whole-batch regimes
LOSSES = {"ce": softmax_loss, "bce": bce_loss}
