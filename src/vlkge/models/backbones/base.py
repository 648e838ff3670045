"""The interaction (scoring) function interface every backbone implements.

A backbone sees only vectors: entity vectors of width ``entity_parts * dim`` (two parts, real
and imaginary, for complex backbones) and relation vectors of width ``relation_width(dim)``.
Where those vectors come from (a structural table, frozen image/text features, a fusion of
both) is the representation's business, so any representation plugs into any backbone.

Three shapes, following LibKGE, each a matrix product or a broadcast, never a Python loop over
queries:

- ``score(h, r, t)``: ``[B, D]`` each, one triple per row -> ``[B]``;
- ``score_tails(h, r, t, ids=None)``: queries ``(h, r, ?)`` against the candidate table ``t``
  of shape ``[E, D]`` -> ``[B, E]``; with ``ids`` ``[B, N]`` only those rows of the table, per
  query -> ``[B, N]`` (negative sampling);
- ``score_heads(h, r, t, ids=None)``: ``(?, r, t)`` against the table ``h``, likewise;
- ``score_sides(anchors, r, table, ids, tail)``: rows of both kinds at once (training batches
  mix them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import nn


class Interaction(nn.Module):
    """Base class of backbones; subclasses implement the three scoring shapes."""

    #: entity vectors are ``entity_parts * dim`` wide (2 for complex-valued backbones)
    entity_parts: int = 1
    #: scores against all entities are one matrix product (evaluation blocks them on the CPU)
    inner_product: bool = False
    #: the backbone's own settings: ``__init__`` keyword -> key of the ``model`` config section
    #: (the factory passes ``model.<key>`` as that keyword)
    config_keys: ClassVar[Mapping[str, str]] = {}

    def relation_width(self, dim: int) -> int:
        return self.entity_parts * dim

    def init_relations(self, weight: torch.Tensor) -> None:
        """Initialise a relation table in place (Xavier-uniform unless a backbone overrides)."""
        nn.init.xavier_uniform_(weight)

    def score(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score_tails(self, h, r, t, ids: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def score_heads(self, h, r, t, ids: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def score_sides(
        self, anchors, r, table, ids: torch.Tensor | None, tail: torch.Tensor
    ) -> torch.Tensor:
        """Queries of either side at once: ``(anchor, r, ?)`` where ``tail`` (``[B]`` bool)
        holds, ``(?, r, anchor)`` elsewhere, against ``table`` (all rows, or ``ids``). Here
        one call per side; the backbones, whose two sides share one query form, make it one
        call (one product, one gradient of the table)."""
        out = None
        for is_tail, rows in (
            (True, tail.nonzero().squeeze(1)),
            (False, (~tail).nonzero().squeeze(1)),
        ):
            if not len(rows):
                continue
            picked = None if ids is None else ids[rows]
            if is_tail:
                scores = self.score_tails(anchors[rows], r[rows], table, picked)
            else:
                scores = self.score_heads(table, r[rows], anchors[rows], picked)
            if out is None:
                out = scores.new_empty(len(anchors), scores.shape[1])
            out[rows] = scores
        return out
