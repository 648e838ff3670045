"""Filtered ranking of test triples against all candidates, vectorised and chunked.

For each query (one side of one triple) the scores of every candidate come from one call of a
``ScoreFn``; known true answers other than the target are filtered out; the rank is computed
with the chosen tie policy:

- ``realistic`` (default): mean of optimistic and pessimistic, the expected rank under random
  tie-breaking;
- ``optimistic`` / ``pessimistic``: the target before / after every tied candidate;
- ``ordinal``: ties broken by entity id (a stable sort), as the VL-KGE reference does; only for
  paper compatibility, since it rewards models that tie many candidates.

On the CPU, chunks are cache-sized (:data:`CACHE_ROWS` queries) and the rows of a scorer made
of matrix products are scored in products of :data:`PRODUCT_SPAN` candidates, then counted
while in cache: ranking runs near the
matrix-product peak (docs/results.md, issue 20). Memory is bounded: queries are processed in
chunks whose score matrix holds at most
``max_scores`` elements, and at most ``max_memory`` bytes counting the masks that ranking
builds beside it (:data:`BYTES_PER_SCORE`). When a single query's row over all entities does
not fit, the candidates are scored in blocks (``span``) in two passes: the first reads each
target's score, the second counts the candidates above and tied with it, block by block.
Filtering uses the sparse index of known triples; nothing entities-by-entities is built.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from vlkge import distributed
from vlkge.data.index import TripleIndex
from vlkge.errors import VlkgeError
from vlkge.terms import SIDES

TIES = ("realistic", "optimistic", "pessimistic", "ordinal")

#: bytes one scored candidate costs while ranking: the float32 score (plus a lower-precision
#: copy under mixed precision), the float32 comparison it is counted from, the pool's mask
BYTES_PER_SCORE = 12

#: on the CPU, queries per chunk when whole rows are scored: small enough for the chunk's
#: scores to stay in cache while they are counted
CACHE_ROWS = 256
#: on the CPU, candidates per matrix product: products this wide run near the machine's peak,
#: products over all of a large graph's entities well below it
PRODUCT_SPAN = 2048

#: ``score_fn(side, anchor_ids [b], relation_ids [b], span=None) -> scores [b, E]``; with
#: ``span=(start, end)`` only the candidates ``start <= id < end`` (``[b, end - start]``). A
#: scorer whose scores are matrix products sets ``score_fn.blocked = True``: on the CPU its
#: rows are then computed in products of :data:`PRODUCT_SPAN` candidates. A scorer of sharded
#: entity tables has a ``shard = (lo, hi)`` attribute: it scores only the candidates
#: ``lo <= id < hi``, and ranks are summed over the ranks (docs/scaling.md). The scorers a
#: run's final scorer is made of also take ``new=`` (:mod:`vlkge.evaluation.new_anchors`): the
#: ``anchor`` ids are then rows of it, entities outside the graph
ScoreFn = Callable[..., torch.Tensor]


def _row_counts(compare, scores, true, out: torch.Tensor, *keep) -> torch.Tensor:
    """Entries of each row where ``compare(scores, true)`` holds (and every ``keep`` mask):
    compared into the float ``out`` and summed as floats, exact while a row holds fewer than
    2^24 (float32) entries, 4x faster on the CPU than summing booleans (which copies them to
    int64 first)."""
    compare(scores, true, out=out)
    for mask in keep:
        out.mul_(mask)
    return out.sum(1).long()


def _counts(
    scores: torch.Tensor,
    true: torch.Tensor,
    targets: torch.Tensor,
    offset: int,
    filter_rows: torch.Tensor | None,
    filter_cols: torch.Tensor | None,
    candidates: torch.Tensor | None,
    ordinal: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Candidates above, tied with, and (``ordinal``) tied before each row's ``true`` score,
    in a block of columns ``offset ..`` of the candidates.

    Fused: the whole block is compared with ``true`` once per count, then the few entries
    that must not count (the filtered known answers and the target itself) are taken back
    from their own scores, instead of building and applying a block-sized mask of them. The
    ``(filter_rows, filter_cols)`` pairs must be distinct (the triple index gives them so).
    """
    # a sum is one fast pass; the exact NaN test runs only when the sum is not a number
    if torch.isnan(scores.sum()) and torch.isnan(scores).any():
        raise VlkgeError("the model produced NaN scores; the run has diverged")
    size, width = scores.shape
    true_col = true.unsqueeze(1)
    out = torch.empty_like(scores, dtype=torch.float32 if width < 1 << 24 else torch.float64)
    keep = () if candidates is None else (candidates,)
    greater = _row_counts(torch.gt, scores, true_col, out, *keep)
    equal = _row_counts(torch.eq, scores, true_col, out, *keep)
    before = None
    if ordinal:
        columns = torch.arange(offset, offset + width, device=scores.device)
        earlier = columns < targets.unsqueeze(1)
        before = _row_counts(torch.eq, scores, true_col, out, *keep, earlier)
    # the entries taken back: filtered answers in the block other than the target, and it
    rows = torch.arange(size, device=scores.device)
    inside = (targets >= offset) & (targets < offset + width)
    out_rows, out_cols = rows[inside], targets[inside]
    if filter_rows is not None:
        keep = (filter_cols >= offset) & (filter_cols < offset + width)
        keep &= filter_cols != targets[filter_rows]
        out_rows = torch.cat([out_rows, filter_rows[keep]])
        out_cols = torch.cat([out_cols, filter_cols[keep]])
    values, limit = scores[out_rows, out_cols - offset], true[out_rows]
    counted = torch.ones_like(values, dtype=torch.bool)
    if candidates is not None:
        counted = candidates[out_rows, out_cols - offset]
    greater -= torch.zeros_like(greater).index_add_(
        0, out_rows, (counted & (values > limit)).long()
    )
    tied_back = counted & (values == limit)
    equal -= torch.zeros_like(equal).index_add_(0, out_rows, tied_back.long())
    if ordinal:
        tied_back &= out_cols < targets[out_rows]
        before -= torch.zeros_like(before).index_add_(0, out_rows, tied_back.long())
    return greater, equal, before


def _ranks(greater, tied, before, ties: str) -> torch.Tensor:
    if ties == "optimistic":
        return greater.double() + 1
    if ties == "ordinal":
        return (greater + before).double() + 1
    if ties == "pessimistic":
        return greater.double() + tied.double() + 1
    return greater.double() + tied.double() / 2 + 1


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
    true = scores[torch.arange(len(targets), device=scores.device), targets]
    if filter_rows is not None:  # repeated pairs would be taken back twice
        width = scores.shape[1]
        pairs = torch.unique(filter_rows * width + filter_cols)
        filter_rows, filter_cols = pairs // width, pairs % width
    counts = _counts(
        scores, true, targets, 0, filter_rows, filter_cols, candidates, ties == "ordinal"
    )
    return _ranks(*counts, ties)


def ranks_in_row(
    scores: torch.Tensor, targets: torch.Tensor, known: torch.Tensor, ties: str = "realistic"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw and filtered ranks of several ``targets`` (``[n]`` ids) in one row of ``scores``
    (``[E]``), as :func:`ranks_from_scores` counts them (filtered: the ``known`` ids other
    than the target left out), from two comparisons of the row per target rather than the
    masks of ``n`` filtered copies of it (a server ranks a query's answers this way).
    ``ordinal`` ties, which need the ids of the tied candidates, go through
    :func:`ranks_from_scores`."""
    n = len(targets)
    if ties == "ordinal":
        rows = scores.unsqueeze(0).expand(2 * n, -1)
        filter_rows = torch.arange(n, 2 * n).repeat_interleave(len(known))
        ranks = ranks_from_scores(rows, targets.repeat(2), filter_rows, known.repeat(n), ties)
        return ranks[:n], ranks[n:]
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, not {ties!r}")
    true = scores[targets].unsqueeze(1)
    above = (scores.unsqueeze(0) > true).sum(1)
    tied = (scores.unsqueeze(0) == true).sum(1) - 1  # not the target itself
    others = scores[known].unsqueeze(0)  # [1, K]; a known target is tied with itself
    known_above = (others > true).sum(1)
    known_tied = (others == true).sum(1) - torch.isin(targets, known).long()
    raw = _ranks(above, tied, None, ties)
    return raw, _ranks(above - known_above, tied - known_tied, None, ties)


def chunking(num_entities: int, max_scores: int, max_memory: int | None) -> tuple[int, int]:
    """``(queries per chunk, candidates per block)`` within both caps."""
    budget = max_scores
    if max_memory is not None:
        budget = min(budget, max_memory // BYTES_PER_SCORE)
    budget = max(1, budget)
    span = min(num_entities, budget)
    return max(1, budget // span), span


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
    max_memory: int | None = None,
) -> dict[str, torch.Tensor]:
    """Filtered ranks of every triple on each side: ``{side: ranks [n]}``.

    ``pool`` is an optional boolean ``[num_relations, num_entities]`` mask of candidates per
    relation (the WikiArt protocol); entities outside a relation's pool are never ranked.
    ``max_memory`` (bytes) caps what a chunk of scores and its masks take, on top of
    ``max_scores`` elements.
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, not {ties!r}")
    chunk, span = chunking(num_entities, max_scores, max_memory)
    shard = getattr(score_fn, "shard", None)
    lo, hi = (0, num_entities) if shard is None else shard
    whole = hi - lo <= span  # whole rows (of this shard) fit: score them once
    out: dict[str, torch.Tensor] = {}
    total = len(triples) * len(sides)
    on_cpu = True  # until the first scores say otherwise
    blocked = getattr(score_fn, "blocked", False)
    with tqdm(total=total, desc="ranking", unit="query", disable=not progress, leave=False) as bar:
        for side in sides:
            ranks = torch.empty(len(triples), dtype=torch.float64)
            start = 0
            while start < len(triples):
                batch = triples[start : start + (min(chunk, CACHE_ROWS) if on_cpu else chunk)]
                h, r, t = batch.unbind(-1)
                anchor, target = (h, t) if side == "tail" else (t, h)
                frows = fcols = None
                if filter_index is not None:
                    frows, fcols = filter_index.known(side, anchor, r)
                query = (side, anchor, r, target, frows, fcols)
                rows = None if pool is None else pool[r]
                block = PRODUCT_SPAN if whole and on_cpu and blocked else span
                spans = [(s, min(s + block, hi)) for s in range(lo, hi, block)]
                found = _rank_spans(
                    score_fn, query, rows, ties, num_entities, spans, whole, shard is not None
                )
                on_cpu = found.device.type == "cpu"
                ranks[start : start + len(batch)] = found.cpu()
                start += len(batch)
                bar.update(len(batch))
            out[side] = ranks
    return out


def _on(device: torch.device, *tensors):
    return tuple(None if t is None else t.to(device) for t in tensors)


def _rank_spans(
    score_fn: ScoreFn,
    query,
    pool_rows,
    ties: str,
    count: int,
    spans: list[tuple[int, int]],
    keep: bool,
    summed: bool = False,
):
    """Ranks over candidate blocks ``spans``: the targets' scores, then counts, block by
    block. ``keep``: the blocks of a chunk fit in memory together, so the second pass counts
    the first pass's blocks (in cache on the CPU) instead of scoring again. ``summed``: this
    process scores only its shard of the ``count`` candidates, and the targets' scores and the
    counts are summed over the ranks (each target is scored by the rank that holds it; the
    others add 0)."""
    side, anchor, relation, target, frows, fcols = query
    kept, true = [], None
    for s, e in spans:
        scores = score_fn(side, anchor, relation, **({} if e - s == count else {"span": (s, e)}))
        scores = scores.float()
        if true is None:
            true = scores.new_zeros(len(target))
            target, frows, fcols, pool_rows = _on(scores.device, target, frows, fcols, pool_rows)
        inside = (target >= s) & (target < e)  # no host sync on a GPU: a where, not an index
        picked = scores.gather(1, (target - s).clamp(0, e - s - 1).unsqueeze(1)).squeeze(1)
        true = torch.where(inside, picked, true)
        if keep:
            kept.append(scores)
    if summed:
        true = distributed.all_reduce(true)
    totals = None
    for i, (s, e) in enumerate(spans):
        scores = kept[i] if keep else score_fn(side, anchor, relation, span=(s, e)).float()
        block_pool = None if pool_rows is None else pool_rows[:, s:e]
        counts = _counts(scores, true, target, s, frows, fcols, block_pool, ties == "ordinal")
        totals = (
            counts
            if totals is None
            else tuple(None if a is None else a + b for a, b in zip(totals, counts, strict=True))
        )
    if summed:
        totals = tuple(None if t is None else distributed.all_reduce(t) for t in totals)
    return _ranks(*totals, ties)
