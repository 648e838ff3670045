"""Filtered ranking of test triples against all candidates, vectorised and chunked.

For each query (one side of one triple) the scores of every candidate come from one call of a
``ScoreFn``; known true answers other than the target are filtered out; the rank is computed
with the chosen tie policy:

- ``realistic`` (default): mean of optimistic and pessimistic, the expected rank under random
  tie-breaking;
- ``optimistic`` / ``pessimistic``: the target before / after every tied candidate;
- ``ordinal``: ties broken by entity id (a stable sort), as the VL-KGE reference does; only for
  paper compatibility, since it rewards models that tie many candidates.

Memory is bounded: queries are processed in chunks whose score matrix holds at most
``max_scores`` elements.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from vlkge.data.index import TripleIndex
from vlkge.errors import VlkgeError

TIES = ("realistic", "optimistic", "pessimistic", "ordinal")
SIDES = ("head", "tail")

#: ``score_fn(side, anchor_ids [b], relation_ids [b]) -> scores [b, num_entities]``
ScoreFn = Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor]


def ranks_from_scores(
    scores: torch.Tensor,
    targets: torch.Tensor,
    filter_rows: torch.Tensor | None = None,
    filter_cols: torch.Tensor | None = None,
    ties: str = "realistic",
    candidates: torch.Tensor | None = None,
) -> torch.Tensor:
    """Ranks of ``targets`` in each row of ``scores`` (1 = best; higher score = better).

    Only candidates count: not the target itself, not the filtered ``(row, col)`` entries, and
    where a boolean ``candidates`` mask is given, only its True entries.
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, not {ties!r}")
    if torch.isnan(scores).any():
        raise VlkgeError("the model produced NaN scores; the run has diverged")
    rows = torch.arange(len(targets))
    counted = (
        torch.ones_like(scores, dtype=torch.bool) if candidates is None else candidates.clone()
    )
    if filter_rows is not None:
        counted[filter_rows, filter_cols] = False
    counted[rows, targets] = False
    true = scores[rows, targets].unsqueeze(1)
    greater = ((scores > true) & counted).sum(1)
    if ties == "optimistic":
        return greater.double() + 1
    equal = (scores == true) & counted
    if ties == "ordinal":
        before = torch.arange(scores.shape[1]).unsqueeze(0) < targets.unsqueeze(1)
        return (greater + (equal & before).sum(1)).double() + 1
    tied = equal.sum(1).double()
    if ties == "pessimistic":
        return greater.double() + tied + 1
    return greater.double() + tied / 2 + 1


def rank_triples(
    score_fn: ScoreFn,
    triples: torch.Tensor,
    num_entities: int,
    filter_index: TripleIndex | None,
    sides: tuple[str, ...] = SIDES,
    ties: str = "realistic",
    max_scores: int = 1 << 24,
    pool: torch.Tensor | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Filtered ranks of every triple on each side: ``{side: ranks [n]}``.

    ``pool`` is an optional boolean ``[num_relations, num_entities]`` mask of candidates per
    relation (the WikiArt protocol); entities outside a relation's pool are never ranked.
    """
    chunk = max(1, max_scores // max(1, num_entities))
    out: dict[str, torch.Tensor] = {}
    total = len(triples) * len(sides)
    with tqdm(total=total, desc="ranking", unit="query", disable=not progress, leave=False) as bar:
        for side in sides:
            ranks = torch.empty(len(triples), dtype=torch.float64)
            for start in range(0, len(triples), chunk):
                batch = triples[start : start + chunk]
                h, r, t = batch.unbind(-1)
                anchor, target = (h, t) if side == "tail" else (t, h)
                scores = score_fn(side, anchor, r).float()
                frows = fcols = None
                if filter_index is not None:
                    frows, fcols = filter_index.known(side, anchor, r)
                ranks[start : start + len(batch)] = ranks_from_scores(
                    scores, target, frows, fcols, ties, None if pool is None else pool[r]
                )
                bar.update(len(batch))
            out[side] = ranks
    return out
