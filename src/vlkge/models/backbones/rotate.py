"""RotatE (Sun et al. 2019): rotate h by the relation's phases and measure the distance to t.

f = gamma - d(h o r, t) with |r_k| = 1. ``distance="modulus"`` sums the complex moduli (the
RotatE paper); ``distance="l2"`` is the L2 norm over all 2d real coordinates (the VL-KGE
reference implementation, kept for paper compatibility). Because rotations preserve
distances, d(h o r, t) = d(h, t o conj(r)), which turns head prediction into the same shape.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vlkge.models.backbones.base import Interaction
from vlkge.models.backbones.complex_ops import rotate
from vlkge.models.backbones.kernels import DISTANCES, distances


class RotatE(Interaction):
    entity_parts = 2
    config_keys = {"gamma": "gamma", "distance": "rotate_distance"}

    def __init__(self, gamma: float = 12.0, distance: str = "modulus"):
        super().__init__()
        if distance not in ("modulus", "l2"):
            raise ValueError(f"RotatE distance must be modulus or l2, not {distance!r}")
        self.gamma = gamma
        self.distance = distance

    def relation_width(self, dim: int) -> int:
        return dim  # one phase per complex coordinate

    def init_relations(self, weight: torch.Tensor) -> None:
        nn.init.uniform_(weight, 0.0, 2 * math.pi)

    def score(self, h, r, t):
        return self.gamma - DISTANCES[self.distance][0](rotate(h, r) - t)

    def score_tails(self, h, r, t, ids=None):
        return self.gamma - distances(rotate(h, r), t, ids, self.distance)

    def score_heads(self, h, r, t, ids=None):
        return self.gamma - distances(rotate(t, -r), h, ids, self.distance)

    def score_sides(self, anchors, r, table, ids, tail):
        query = rotate(anchors, torch.where(tail.unsqueeze(1), r, -r))
        return self.gamma - distances(query, table, ids, self.distance)
