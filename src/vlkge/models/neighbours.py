"""Structural parts borrowed from modal neighbours (inductive use).

An entity unseen in training has no structural part of its own; it can borrow one: the
softmax-weighted mean of the structural parts of the ``k`` seen entities whose frozen features are most similar to its own (cosine over the
L2-normalised features of every modality both have). A new synset then starts from what its
text neighbours (mostly its siblings) learnt about the graph, instead of from its text
projection alone.

The neighbours depend only on the frozen features, so they are found once, in blocks (the
similarity matrix is never materialised whole), and kept as ``[n, k]`` index/weight tables.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: rows of the query side scored against the bank at once
BLOCK = 4096


def feature_keys(
    parts: list[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Search keys ``[n, sum of widths]`` from ``[(table [n, w], mask [n]), ...]`` and which
    rows have any feature. Each modality is normalised on its own (so none dominates by
    scale), missing ones are zero, and the key is normalised again."""
    blocks = [F.normalize(t.float(), dim=1) * m.unsqueeze(1) for t, m in parts]
    has = torch.stack([m.bool() for _, m in parts]).any(0)
    return F.normalize(torch.cat(blocks, 1), dim=1), has


def nearest(
    queries: torch.Tensor, bank: torch.Tensor, k: int, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most similar bank rows of every query key and their softmax weights
    (``similarity / temperature``), ``([n, k] long, [n, k] float)``."""
    k = min(k, len(bank))
    index, weight = [], []
    for start in range(0, len(queries), BLOCK):
        top, idx = (queries[start : start + BLOCK] @ bank.T).topk(k, dim=1)
        index.append(idx)
        weight.append(torch.softmax(top / temperature, dim=1))
    if not index:  # no query: empty tables of width k
        return torch.zeros(0, k, dtype=torch.long), torch.zeros(0, k)
    return torch.cat(index), torch.cat(weight)
