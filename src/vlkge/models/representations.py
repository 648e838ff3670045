"""Entity and relation representations: where the vectors a backbone scores come from.

A representation maps ids to vectors (``forward(index)``; ``index=None`` gives the whole table).
The structural embedding here is the plain learned table; multimodal representations (frozen
image/text features fused with structure) implement the same interface.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Representation(nn.Module):
    """Maps ids to vectors of a fixed ``width``."""

    width: int
    count: int

    def forward(self, index: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


class Embedding(Representation):
    """A learned table of ``count`` rows (Xavier-uniform unless an ``init`` is given)."""

    def __init__(self, count: int, width: int, init=None):
        super().__init__()
        self.count, self.width = count, width
        self.weight = nn.Parameter(torch.empty(count, width))
        (init or nn.init.xavier_uniform_)(self.weight.data)

    def forward(self, index: torch.Tensor | None = None) -> torch.Tensor:
        # F.embedding's backward accumulates rows much faster than advanced indexing's
        return self.weight if index is None else F.embedding(index, self.weight)
