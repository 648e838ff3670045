"""ComplEx (Trouillon et al. 2016): f = Re(<h, r, conj(t)>).

Entity and relation vectors hold ``[real ; imaginary]`` halves of width ``dim`` each, so
f = <Re h, a, Re t> + <Im h, a, Im t> + <Re h, b, Im t> - <Im h, b, Re t> for r = a + ib.
Both one-against-all directions reduce to a single matrix product.
"""

from __future__ import annotations

import torch

from vlkge.models.backbones.base import Interaction
from vlkge.models.backbones.complex_ops import halves
from vlkge.models.backbones.kernels import products


class ComplEx(Interaction):
    entity_parts = 2
    inner_product = True

    @staticmethod
    def _tail_query(h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        (hr, hi), (a, b) = halves(h), halves(r)
        return torch.cat([hr * a - hi * b, hi * a + hr * b], dim=-1)

    @staticmethod
    def _head_query(r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        (tr, ti), (a, b) = halves(t), halves(r)
        return torch.cat([a * tr + b * ti, a * ti - b * tr], dim=-1)

    def score(self, h, r, t):
        return (self._tail_query(h, r) * t).sum(-1)

    def score_tails(self, h, r, t, ids=None):
        return products(self._tail_query(h, r), t, ids)

    def score_heads(self, h, r, t, ids=None):
        return products(self._head_query(r, t), h, ids)

    def score_sides(self, anchors, r, table, ids, tail):
        tails, heads = self._tail_query(anchors, r), self._head_query(r, anchors)
        return products(torch.where(tail.unsqueeze(1), tails, heads), table, ids)
