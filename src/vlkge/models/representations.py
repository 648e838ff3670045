"""Entity and relation representations: where the vectors a backbone scores come from.

A representation maps ids to vectors (``forward(index)``; ``index=None`` gives the whole table).
The structural embedding here is the plain learned table; multimodal representations (frozen
image/text features fused with structure, :mod:`vlkge.models.multimodal`) implement the same
interface and can also represent entities outside the graph from their features
(:meth:`Representation.represent`, docs/method.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vlkge.errors import VlkgeError

#: raw features of new entities: ``{modality: FloatTensor[n, w]}``, or ``(features, mask [n])``
#: when some rows lack the modality
NewFeatures = dict[str, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]
#: how :meth:`Representation.represent` builds Im(e) of a new entity for complex backbones:
#: ``auto`` the gated image path when it has an image, else 0; ``zero``; ``mean_text`` the
#: mean free Im row of the graph's entities with a text (:mod:`vlkge.models.imaginary`)
NEW_IMAGINARY = ("auto", "zero", "mean_text")


def check_imaginary(imaginary: str) -> None:
    if imaginary not in NEW_IMAGINARY:
        raise ValueError(f"imaginary must be one of {NEW_IMAGINARY}, not {imaginary!r}")


class Representation(nn.Module):
    """Maps ids to vectors of a fixed ``width``."""

    width: int
    count: int
    #: the modalities whose features it reads (none: it cannot represent a new entity)
    modalities: Sequence[str] = ()

    def forward(self, index: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def represent(self, features: NewFeatures, imaginary: str = "auto") -> torch.Tensor:
        """Vectors ``[n, width]`` of ``n`` entities outside the graph, from their raw features
        (``imaginary``: :data:`NEW_IMAGINARY`); only representations built on features can."""
        raise VlkgeError(
            "the run's model has no modal features (model.modalities: []); it cannot represent "
            "a new entity"
        )


def dropped(rows: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``rows`` with dropout ``p`` in training (``model.dropout``, docs/method.md)."""
    return F.dropout(rows, p) if p and training else rows


class Embedding(Representation):
    """A learned table of ``count`` rows (Xavier-uniform unless an ``init`` is given); the rows
    it returns in training are dropped out with probability ``dropout``."""

    def __init__(self, count: int, width: int, init=None, dropout: float = 0.0):
        super().__init__()
        self.count, self.width, self.dropout = count, width, dropout
        self.weight = nn.Parameter(torch.empty(count, width))
        (init or nn.init.xavier_uniform_)(self.weight.data)

    def forward(self, index: torch.Tensor | None = None) -> torch.Tensor:
        # F.embedding's backward accumulates rows much faster than advanced indexing's
        rows = self.weight if index is None else F.embedding(index, self.weight)
        return dropped(rows, self.dropout, self.training)
