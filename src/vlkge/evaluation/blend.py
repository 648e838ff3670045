"""Late fusion of a scorer with a second one (the zero-shot baseline), fit on validation.

A trained inductive model and the zero-shot baseline err on different queries: the model ranks
by structure borrowed from the text, the baseline reads the relation's prompt naming each
candidate. Their sum ``score + w * other`` ranks better than either where both are informative,
and ``w`` is chosen per (relation, side) from a grid by the validation split's MRR, like the
hubness calibration (:mod:`vlkge.evaluation.calibration`): ``w = 0`` (the first scorer alone)
is always a candidate, and a very large ``w`` is the second scorer with the first breaking its
ties.

Fitting ``w`` ranks the validation split once per grid value; :func:`remembered` lets those
passes score each part once (:meth:`vlkge.evaluation.evaluator.Evaluator.fit_blend`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from vlkge.errors import VlkgeError, echo
from vlkge.evaluation.new_anchors import NewAnchors, Unscorable
from vlkge.evaluation.ranking import ScoreFn
from vlkge.terms import SIDES


def blended(
    score_fn: ScoreFn, other_fn: ScoreFn, weights: dict[str, torch.Tensor], key: str = "a blend"
) -> ScoreFn:
    """``score_fn + weights[side][r] * other_fn`` (``weights``: per side ``[R]``); also the
    hubness calibration's form (:func:`~vlkge.evaluation.calibration.penalty_scorer`). For new
    anchors (``new``, :mod:`vlkge.evaluation.new_anchors`) a second scorer that cannot score
    them is left out, noted in ``new.left_out`` under ``key``."""

    def score(
        side: str,
        anchor: torch.Tensor,
        relation: torch.Tensor,
        span: tuple[int, int] | None = None,
        new: NewAnchors | None = None,
    ) -> torch.Tensor:
        extra = {} if new is None else {"new": new}
        scores = score_fn(side, anchor, relation, span, **extra)
        weight = weights[side][relation.cpu()].unsqueeze(1)
        if not weight.any():  # no query of this chunk blends: skip the second scorer
            return scores
        try:
            other = other_fn(side, anchor, relation, span, **extra)  # in its own (float32) type
        except Unscorable as why:
            if new is None:
                raise
            new.left_out[key] = str(why)
            return scores
        return scores + (weight.to(other.device, other.dtype) * other).to(
            scores.device, scores.dtype
        )

    return score


def recorded_weights(
    chosen: dict[str, dict[str, float]], relations: list[str]
) -> dict[str, torch.Tensor]:
    """Per side ``[R]`` weights from a fit's summary as ``metrics.json`` records it (``{side:
    {relation name: w}}``, the nonzero ones): the blend a run was evaluated with, rebuilt (a
    side it was not evaluated on, or a relation it did not weigh, gets 0: the scorer alone)."""
    index = {name: i for i, name in enumerate(relations)}
    weights = {side: torch.zeros(len(relations)) for side in SIDES}
    if not isinstance(chosen, dict):
        raise VlkgeError("recorded weights: expected {side: {relation: weight}}")
    for side, by_relation in chosen.items():
        if side not in weights or not isinstance(by_relation, dict):
            raise VlkgeError(f"recorded weights of side {echo(side)}: not one of {SIDES}")
        for name, weight in by_relation.items():
            if name not in index:
                raise VlkgeError(f"recorded weights: relation {echo(name)} is not the graph's")
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise VlkgeError(f"recorded weight of {echo(name)}: not a number")
            weights[side][index[name]] = float(weight)
    return weights


def remembered(score_fn: ScoreFn) -> tuple[ScoreFn, Callable[[], None]]:
    """``score_fn`` answering repeated calls (same side, anchors, relations and span) from
    memory, and the function that empties that memory: the passes of a weight fit over one
    chunk of queries score each part once instead of once per weight."""
    memory: dict[tuple, torch.Tensor] = {}

    def score(
        side: str,
        anchor: torch.Tensor,
        relation: torch.Tensor,
        span: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        key = (side, span, _bytes(anchor), _bytes(relation))
        if key not in memory:
            memory[key] = score_fn(side, anchor, relation, span)
        return memory[key]

    return score, memory.clear


def _bytes(ids: torch.Tensor) -> bytes:
    return ids.cpu().numpy().tobytes()
