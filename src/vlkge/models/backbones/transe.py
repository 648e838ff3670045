"""TransE (Bordes et al. 2013) as in VL-KGE: f = gamma - || h^ + r^ - t^ ||_1, hats L2-normalised."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vlkge.models.backbones.base import Interaction
from vlkge.models.backbones.kernels import distances


class TransE(Interaction):
    config_keys = {"gamma": "gamma"}

    def __init__(self, gamma: float = 12.0):
        super().__init__()
        self.gamma = gamma

    def score(self, h, r, t):
        h, r, t = F.normalize(h, dim=-1), F.normalize(r, dim=-1), F.normalize(t, dim=-1)
        return self.gamma - (h + r - t).abs().sum(-1)

    def score_tails(self, h, r, t, ids=None):
        query = F.normalize(h, dim=-1) + F.normalize(r, dim=-1)
        return self.gamma - distances(query, F.normalize(t, dim=-1), ids, "l1")

    def score_heads(self, h, r, t, ids=None):
        # ||h + r - t|| = ||h - (t - r)||
        query = F.normalize(t, dim=-1) - F.normalize(r, dim=-1)
        return self.gamma - distances(query, F.normalize(h, dim=-1), ids, "l1")

    def score_sides(self, anchors, r, table, ids, tail):
        anchors, r = F.normalize(anchors, dim=-1), F.normalize(r, dim=-1)
        query = torch.where(tail.unsqueeze(1), anchors + r, anchors - r)
        return self.gamma - distances(query, F.normalize(table, dim=-1), ids, "l1")
