"""TransE (Bordes et al. 2013) as in VL-KGE: f = gamma - || h^ + r^ - t^ ||_1, hats L2-normalised."""

from __future__ import annotations

import torch

from vlkge.models.backbones.base import Interaction
from vlkge.models.backbones.kernels import distances

#: ``F.normalize``'s floor on a row's norm
EPS = 1e-12


class _Unit(torch.autograd.Function):
    """``F.normalize(x, dim=-1)`` (same values) with a backward of three passes over ``x``
    where autograd's takes about ten: a training step normalises the whole entity table, so
    this is a pass over every table row per pass saved."""

    @staticmethod
    def forward(ctx, x):
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        denom = norm.clamp_min(EPS)
        unit = x / denom
        ctx.save_for_backward(unit, denom, norm >= EPS)
        return unit

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        unit, denom, kept = ctx.saved_tensors
        # d(x / |x|) = (g - u (u . g)) / |x|; where the floor holds, the norm is a constant
        dot = torch.linalg.vecdot(unit, grad).unsqueeze(-1) * kept
        return torch.addcmul(grad, unit, dot, value=-1).div_(denom)


def unit(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` scaled to unit L2 norm (:class:`_Unit`)."""
    return _Unit.apply(x)


class TransE(Interaction):
    config_keys = {"gamma": "gamma"}

    def __init__(self, gamma: float = 12.0):
        super().__init__()
        self.gamma = gamma

    def score(self, h, r, t):
        return self.gamma - (unit(h) + unit(r) - unit(t)).abs().sum(-1)

    def score_tails(self, h, r, t, ids=None):
        return self.gamma - distances(unit(h) + unit(r), unit(t), ids, "l1")

    def score_heads(self, h, r, t, ids=None):
        # ||h + r - t|| = ||h - (t - r)||
        return self.gamma - distances(unit(t) - unit(r), unit(h), ids, "l1")

    def score_sides(self, anchors, r, table, ids, tail):
        anchors, r = unit(anchors), unit(r)
        query = torch.where(tail.unsqueeze(1), anchors + r, anchors - r)
        return self.gamma - distances(query, unit(table), ids, "l1")
