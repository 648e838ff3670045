"""Frozen features reshaped before their projection: centering, PCA or whitening, L2.

Sentence and CLIP features are anisotropic: they share a large common direction, so raw cosine
similarities crowd near one and a linear projection spends its first steps removing the mean.
:class:`FeatureTransform` maps a raw feature ``x`` (width ``w``) to

- ``center``: ``x - mu``;
- ``pca``: ``(x - mu) V_k``, the top ``k`` principal directions (``k = features.width``, else
  ``w``), each of its first sign-canonical (largest-magnitude entry positive);
- ``whiten``: ``(x - mu) V_k diag(1 / s_k) sqrt(n - 1)``: the same directions scaled to unit
  variance;

then, with ``normalize``, the result divided by its L2 norm. ``mu``, ``V`` and ``s`` are fit
once on the rows that have the modality (features are inputs, not labels: fitting on every
entity's feature leaks no answer), from at most ``FIT_ROWS`` rows drawn with a fixed seed.
They are persistent buffers: a checkpoint carries the transform it was trained with, so a run
loads the same one on any machine (an SVD's signs and last digits differ between BLAS
libraries). New entities in prediction go through the same transform. The formulas and the
measured effect are in docs/method.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PREPROCESS = ("none", "center", "pca", "whiten")  # features.preprocess (docs/method.md)
FIT_ROWS = 200_000  # rows used to fit the transform (a fixed-seed sample beyond that)
EPS = 1e-6  # floor of the singular values divided by in whitening


class FeatureTransform(nn.Module):
    """One modality's fitted transform (see the module docstring); ``width`` is its output."""

    def __init__(
        self,
        table: torch.Tensor,
        mask: torch.Tensor,
        method: str = "none",
        width: int | None = None,
        normalize: bool = False,
    ):
        super().__init__()
        if method not in PREPROCESS:
            raise ValueError(f"method must be one of {', '.join(PREPROCESS)}, not {method!r}")
        self.method, self.normalize = method, normalize
        self.in_width = table.shape[1]
        # normalising alone needs no statistics: no copy of the table is made for it
        rows = _fit_rows(table, mask) if method != "none" else table[:0].double()
        if width is not None and method in ("pca", "whiten") and width > min(rows.shape):
            raise ValueError(
                f"features.width {width} exceeds what {len(rows)} rows of {self.in_width}-d "
                f"features can give ({min(rows.shape)})"
            )
        mean = rows.mean(0) if method != "none" and len(rows) else torch.zeros(self.in_width)
        self.register_buffer("mean", mean.float())
        basis = torch.zeros(self.in_width, 0)
        if method in ("pca", "whiten"):
            basis = _principal_directions(rows - mean, width or self.in_width, method == "whiten")
        self.register_buffer("basis", basis)
        self.width = basis.shape[1] if method in ("pca", "whiten") else self.in_width

    @property
    def identity(self) -> bool:
        return self.method == "none" and not self.normalize

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Transformed rows of ``x`` ``[n, in_width]``; rows where ``mask`` is False stay 0."""
        if self.identity:
            return x
        out = x - self.mean if self.method != "none" else x
        if self.method in ("pca", "whiten"):
            out = out @ self.basis
        if self.normalize:
            out = F.normalize(out, dim=-1)
        return out if mask is None else out * mask.unsqueeze(1).to(out.dtype)


def _fit_rows(table: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    index = mask.nonzero().squeeze(1)
    if len(index) > FIT_ROWS:
        generator = torch.Generator().manual_seed(0)
        index = index[torch.randperm(len(index), generator=generator)[:FIT_ROWS]].sort().values
    return table[index].double()


def _principal_directions(centered: torch.Tensor, k: int, whiten: bool) -> torch.Tensor:
    """Top-``k`` right singular vectors ``[w, k]`` (float32), sign-canonical; scaled to unit
    variance per direction when ``whiten``."""
    _, s, vh = torch.linalg.svd(centered, full_matrices=False)
    v = vh[:k].T
    signs = torch.sign(v.gather(0, v.abs().argmax(0, keepdim=True)))
    v = v * signs
    if whiten:
        v = v * (max(len(centered) - 1, 1) ** 0.5 / s[:k].clamp_min(EPS))
    return v.float()
