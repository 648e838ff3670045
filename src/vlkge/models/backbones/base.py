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
- ``score_heads(h, r, t, ids=None)``: ``(?, r, t)`` against the table ``h``, likewise.
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
