"""Hubness correction of candidate scores, fit on validation (inductive use).

Some candidates score high against almost every anchor of a relation ("hubs"): on the
inductive WN9-IMG split, new entities represented from their text (or a borrowed structural
part) are such hubs for the head side of ``_hypernym``, and crowd out the right new entity.
The correction subtracts from candidate ``e``'s score, per relation ``r`` and side, a penalty
``beta * T * logsumexp_a(score(a, r, e) / T)`` over a bank of anchors ``a`` (the inverted
softmax of cross-modal retrieval). Whether hubs are noise depends on the direction: the
answers of ``(new, _hypernym, ?)`` are true hubs, those of ``(?, _hypernym, known)`` are not.
So ``beta`` is chosen per (relation, side) from a grid by the validation split's MRR, and
``beta = 0`` (no change) wins wherever the correction does not help.

``T`` is ``temperature`` times the standard deviation of the relation's bank scores, so the
setting does not depend on a model's score scale. The penalty costs one score matrix
``[bank, E]`` per relation and side (at most one held at a time: its statistics are streamed
over chunks of anchors); it is computed once per evaluation. Every entity as the bank needs
``4 E^2`` bytes (6.7 GB for WN18RR's 40,943); ``bank`` bounds that on larger graphs.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch

from vlkge.evaluation.ranking import ScoreFn
from vlkge.files import atomic_write

log = logging.getLogger(__name__)

#: bank anchors scored at once
CHUNK = 1024


@torch.no_grad()
def hub_penalties(
    score_fn: ScoreFn,
    num_entities: int,
    num_relations: int,
    sides: tuple[str, ...],
    temperature: float,
    bank: int = 0,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """``{side: [R, E]}``: every candidate's ``T * logsumexp`` of its scores against the bank
    anchors (all entities, or ``bank`` of them drawn with ``seed``), per relation."""
    anchors = torch.arange(num_entities)
    if 0 < bank < num_entities:
        gen = torch.Generator().manual_seed(seed)
        anchors = torch.randperm(num_entities, generator=gen)[:bank].sort().values
    out = {}
    for side in sides:
        penalty = torch.zeros(num_relations, num_entities)
        for r in range(num_relations):
            chunks = [
                score_fn(side, block, torch.full_like(block, r)).float()
                for block in anchors.split(CHUNK)
            ]
            scale = temperature * _finite_std(chunks)
            if not scale > 0:  # constant scores: every candidate equally a hub
                continue
            lse = torch.full((num_entities,), -torch.inf)
            while chunks:  # streamed, each chunk freed once summed: one bank matrix at most
                lse = torch.logaddexp(lse, torch.logsumexp(chunks.pop() / scale, dim=0))
            lse = scale * lse
            penalty[r] = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
        out[side] = penalty
    return out


def _finite_std(chunks: list[torch.Tensor]) -> float:
    """The (unbiased) standard deviation of the finite scores of all ``chunks``, combined chunk
    by chunk (Chan et al.'s pairwise update, in float64) instead of over a copy of them all."""
    count, mean, m2 = 0, 0.0, 0.0
    for chunk in chunks:
        mask = torch.isfinite(chunk)
        finite = (chunk if bool(mask.all()) else chunk[mask]).double()  # gathered only if needed
        n = finite.numel()
        if not n:
            continue
        var, chunk_mean = torch.var_mean(finite, correction=0)
        delta = float(chunk_mean) - mean
        total = count + n
        mean += delta * n / total
        m2 += float(var) * n + delta * delta * count * n / total
        count = total
    return (m2 / (count - 1)) ** 0.5 if count > 1 else 0.0


def save_penalties(path: Path, penalties: dict[str, torch.Tensor]) -> str:
    """Write ``penalties`` (``{side: [R, E]}``) to the safetensors file ``path`` (atomically),
    so that ``vlkge predict`` and ``vlkge serve`` read them instead of recomputing them (minutes
    on a large graph); the file's sha256, which ``metrics.json`` records beside it."""
    from safetensors.torch import save

    data = save({side: values.float().contiguous() for side, values in penalties.items()})
    with atomic_write(path, binary=True) as handle:
        handle.write(data)
    return hashlib.sha256(data).hexdigest()


def load_penalties(
    path: Path, sha256: object, sides: tuple[str, ...], shape: tuple[int, int]
) -> dict[str, torch.Tensor] | None:
    """The penalties :func:`save_penalties` wrote to ``path``, when the file is there, has the
    recorded ``sha256`` (it belongs to this evaluation: not edited, truncated or left by
    another) and holds finite ``[R, E]`` float32 tables of ``sides``; ``None`` otherwise, with
    one line saying why (they are then recomputed). A safetensors file holds only tensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if not path.is_file():
        log.warning("%s is missing: the hub penalties are recomputed", path)
        return None
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        log.warning("%s is not the file metrics.json records: recomputed", path)
        return None
    try:
        penalties = load(data)
    except SafetensorError as exc:
        log.warning("%s: unreadable (%s): recomputed", path, exc)
        return None
    if set(penalties) != set(sides) or any(
        p.shape != shape or p.dtype != torch.float32 or not torch.isfinite(p).all()
        for p in penalties.values()
    ):
        log.warning("%s does not hold finite %s penalties of %s: recomputed", path, shape, sides)
        return None
    return penalties


def penalty_scorer(penalties: dict[str, torch.Tensor]) -> ScoreFn:
    """A ``ScoreFn`` of the negated penalties (``penalties[side][r]`` per candidate, whatever
    the anchor, also a new one): blended with a model's scorer by
    :func:`~vlkge.evaluation.blend.blended`, the calibration."""

    def negated_penalty(
        side: str,
        anchor: torch.Tensor,
        relation: torch.Tensor,
        span: tuple[int, int] | None = None,
        new: object = None,  # new anchors (vlkge.evaluation.new_anchors): the same penalties
    ) -> torch.Tensor:
        penalty = -penalties[side][relation.cpu()]
        return penalty if span is None else penalty[:, span[0] : span[1]]

    return negated_penalty


def fit_weights(
    ranks_by_weight: dict[float, dict[str, torch.Tensor]],
    relations: torch.Tensor,
    num_relations: int,
) -> dict[str, torch.Tensor]:
    """Per side and relation, the weight whose validation ranks have the highest MRR (the
    smallest weight on ties; 0 where the relation has no validation query)."""
    grid = sorted(ranks_by_weight)
    out = {}
    for side in next(iter(ranks_by_weight.values())):
        best = torch.zeros(num_relations, dtype=torch.float64)  # the grid values, exactly
        for r in relations.unique().tolist():
            mask = relations == r
            mrr = [float((1.0 / ranks_by_weight[w][side][mask].double()).mean()) for w in grid]
            best[r] = grid[max(range(len(grid)), key=lambda i: (mrr[i], -i))]
        out[side] = best
    return out
