"""DistMult (Yang et al. 2015): f = sum_k h_k r_k t_k."""

from __future__ import annotations

from vlkge.models.backbones.base import Interaction
from vlkge.models.backbones.kernels import products


class DistMult(Interaction):
    inner_product = True

    def score(self, h, r, t):
        return (h * r * t).sum(-1)

    def score_tails(self, h, r, t, ids=None):
        return products(h * r, t, ids)

    def score_heads(self, h, r, t, ids=None):
        return products(t * r, h, ids)

    def score_sides(self, anchors, r, table, ids, tail):
        return products(anchors * r, table, ids)  # h * r and t * r: one form for both sides
