"""Building blocks of the multimodal entity representation (SPEC 2.2 and 2.4).

- :class:`Projection`: a frozen feature of width ``w`` to the model width ``d`` (bias-free,
  Xavier-uniform) when ``w != d``, the identity when ``w == d``; optionally followed by a
  zero-initialised low-rank residual adapter ``z + U(D z)`` (``U`` zero, ``D`` Xavier), which
  leaves the output unchanged at initialisation but receives gradients from the first step.
- :func:`fuse`: average, concatenation or softmax-weighted fusion of ``k`` parts under
  per-entity masks. A part that an entity lacks contributes nothing: it is left out of the
  average and of the softmax, never averaged in as a zero vector. In concatenation it is
  zero-filled (its slot must exist so every entity has the same width).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

FUSIONS = ("average", "concat", "weighted")


class Projection(nn.Module):
    """Feature width ``in_width`` -> model width ``width`` (identity when they are equal)."""

    def __init__(self, in_width: int, width: int, adapter_rank: int = 0):
        super().__init__()
        self.in_width, self.width = in_width, width
        self.linear: nn.Linear | None = None
        if in_width != width:
            self.linear = nn.Linear(in_width, width, bias=False)
            nn.init.xavier_uniform_(self.linear.weight)
        self.down: nn.Linear | None = None
        self.up: nn.Linear | None = None
        if adapter_rank:
            self.down = nn.Linear(width, adapter_rank, bias=False)
            self.up = nn.Linear(adapter_rank, width, bias=False)
            nn.init.xavier_uniform_(self.down.weight)
            nn.init.zeros_(self.up.weight)

    @property
    def identity(self) -> bool:
        return self.linear is None and self.down is None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x if self.linear is None else self.linear(x)
        if self.down is not None:
            z = z + self.up(self.down(z))
        return z


def fuse(
    parts: Sequence[torch.Tensor],
    present: torch.Tensor,
    counted: torch.Tensor,
    fusion: str,
    logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fuse ``k`` parts ``[n, d]`` into ``[n, d]`` (``[n, k * d]`` for ``concat``).

    ``present`` ``[n, k]``: the part holds a real vector (absent parts count as zero);
    ``counted`` ``[n, k]``: the part takes a share of the average or the softmax. Normally
    ``counted == present``; paper compatibility counts a masked structural part that is not
    present (SPEC 2.5). ``logits`` ``[k]`` are the learnable weights of ``weighted`` fusion.
    An entity with nothing counted gets the zero vector.

    The parts stay separate tensors (a weighted sum, not a stacked ``[n, k, d]`` tensor): each
    part's gradient is then a contiguous ``[n, d]`` block, which keeps the backward matrix
    products of the projections on the fast BLAS path.
    """
    mask = present.to(parts[0].dtype)
    if fusion == "concat":
        return torch.cat([p * mask[:, k : k + 1] for k, p in enumerate(parts)], 1)
    if fusion == "average":
        share = counted.to(mask.dtype)
        share = share / share.sum(-1, keepdim=True).clamp_min(1.0)
    elif fusion == "weighted":
        if logits is None:
            raise ValueError("weighted fusion needs logits")
        # softmax over the counted parts only; exp(-max) keeps it stable, and an entity with
        # no counted part gets zero weights (not NaN) and a zero gradient
        scores = torch.exp(logits - logits.max().detach()) * counted.to(mask.dtype)
        share = scores / scores.sum(-1, keepdim=True).clamp_min(torch.finfo(mask.dtype).tiny)
    else:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, not {fusion!r}")
    weight = share * mask
    out = weight[:, :1] * parts[0]
    for k in range(1, len(parts)):
        out = torch.addcmul(out, weight[:, k : k + 1], parts[k])
    return out
