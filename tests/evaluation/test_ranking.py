"""Filtered ranks against brute-force Python computations."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vlkge.data.index import TripleIndex
from vlkge.evaluation.ranking import TIES, rank_triples, ranks_from_scores, ranks_in_row


def brute_rank(row, target, filtered, ties):
    true = row[target]
    others = [s for j, s in enumerate(row) if j != target and j not in filtered]
    greater = sum(s > true for s in others)
    equal = sum(s == true for s in others)
    if ties == "optimistic":
        return greater + 1
    if ties == "pessimistic":
        return greater + equal + 1
    if ties == "ordinal":
        before = sum(
            1
            for j, s in enumerate(row)
            if j < target and j != target and j not in filtered and s == true
        )
        return greater + before + 1
    return greater + equal / 2 + 1


@settings(max_examples=60, deadline=None)
@given(
    scores=st.lists(st.lists(st.integers(-3, 3), min_size=7, max_size=7), min_size=1, max_size=6),
    data=st.data(),
    ties=st.sampled_from(TIES),
)
def test_ranks_match_brute_force(scores, data, ties):
    n = len(scores)
    targets = [data.draw(st.integers(0, 6)) for _ in range(n)]
    filters = [data.draw(st.sets(st.integers(0, 6), max_size=4)) for _ in range(n)]
    rows = [i for i, f in enumerate(filters) for _ in f]
    cols = [c for f in filters for c in f]
    got = ranks_from_scores(
        torch.tensor(scores, dtype=torch.float),
        torch.tensor(targets),
        torch.tensor(rows, dtype=torch.long),
        torch.tensor(cols, dtype=torch.long),
        ties,
    )
    for i in range(n):
        assert got[i] == brute_rank(scores[i], targets[i], filters[i] - {targets[i]}, ties)


def test_nan_scores_are_an_error():
    from vlkge.errors import VlkgeError

    with pytest.raises(VlkgeError, match="NaN"):
        ranks_from_scores(torch.tensor([[float("nan"), 1.0]]), torch.tensor([0]))


def test_rank_triples_filtered_and_chunked():
    g = torch.Generator().manual_seed(0)
    num_entities, num_relations = 9, 2
    known = torch.unique(
        torch.stack(
            [
                torch.randint(9, (40,), generator=g),
                torch.randint(2, (40,), generator=g),
                torch.randint(9, (40,), generator=g),
            ],
            1,
        ),
        dim=0,
    )
    test = known[:10]
    table = torch.randn(9, 9, 2, generator=g)  # score(h, ., t) = table[h, t, r]

    def score_fn(side, anchor, relation):
        return table[anchor, :, relation] if side == "tail" else table[:, anchor, relation].T

    index = TripleIndex(known, num_entities, num_relations)
    ranks = rank_triples(score_fn, test, num_entities, index, max_scores=9 * 3)  # 3 rows a chunk
    known_set = {tuple(x) for x in known.tolist()}
    for i, (h, r, t) in enumerate(test.tolist()):
        tail_filter = {e for e in range(9) if (h, r, e) in known_set}
        head_filter = {e for e in range(9) if (e, r, t) in known_set}
        assert ranks["tail"][i] == brute_rank(
            table[h, :, r].tolist(), t, tail_filter - {t}, "realistic"
        )
        assert ranks["head"][i] == brute_rank(
            table[:, t, r].tolist(), h, head_filter - {h}, "realistic"
        )


def test_candidate_pool_excludes_outsiders():
    scores = lambda side, a, r: torch.tensor([[5.0, 4.0, 3.0, 2.0]]).expand(len(a), 4).clone()  # noqa: E731
    triples = torch.tensor([[0, 0, 3]])
    pool = torch.tensor([[False, True, False, True]])
    ranks = rank_triples(scores, triples, 4, None, sides=("tail",), pool=pool)
    assert ranks["tail"].tolist() == [2.0]  # only entity 1 (4.0) outranks entity 3 inside the pool


def test_infinite_scores_and_excluded_candidates_do_not_count():
    # target scored -inf, one filtered candidate, one outside the pool, one better candidate
    scores = torch.tensor([[float("-inf"), 0.0, float("-inf"), 5.0, float("-inf")]])
    pool = torch.tensor([[True, True, True, True, False]])
    rank = ranks_from_scores(
        scores, torch.tensor([0]), torch.tensor([0]), torch.tensor([1]), "pessimistic", pool
    )
    assert rank.tolist() == [3.0]  # 5.0 is better, the -inf at index 2 ties; index 4 is outside


# --- properties beyond the brute-force comparison ------------------------------------------
score_rows = st.lists(
    st.lists(st.integers(-4, 4), min_size=6, max_size=6), min_size=1, max_size=5
).map(lambda rows: torch.tensor(rows, dtype=torch.float))


@st.composite
def queries(draw):
    """Scores, targets and a filter (as row/column lists) for a batch of queries."""
    scores = draw(score_rows)
    n, e = scores.shape
    targets = torch.tensor([draw(st.integers(0, e - 1)) for _ in range(n)])
    pairs = draw(st.sets(st.tuples(st.integers(0, n - 1), st.integers(0, e - 1)), max_size=8))
    rows = torch.tensor([r for r, _ in sorted(pairs)], dtype=torch.long)
    cols = torch.tensor([c for _, c in sorted(pairs)], dtype=torch.long)
    return scores, targets, rows, cols


TIES_ALL = ["realistic", "optimistic", "pessimistic", "ordinal"]


@settings(max_examples=80, deadline=None)
@given(
    query=queries(),
    scale=st.floats(0.1, 10.0, allow_subnormal=False),
    shift=st.floats(-5.0, 5.0, allow_subnormal=False),
)
def test_ranks_depend_only_on_the_order_of_scores(query, scale, shift):
    scores, targets, rows, cols = query
    for ties in TIES_ALL:
        base = ranks_from_scores(scores, targets, rows, cols, ties)
        for transformed in (scores * scale + shift, torch.exp(scores), torch.tanh(scores / 8)):
            assert torch.equal(ranks_from_scores(transformed, targets, rows, cols, ties), base)


@settings(max_examples=80, deadline=None)
@given(query=queries())
def test_tie_policies_are_ordered_and_ranks_bounded(query):
    scores, targets, rows, cols = query
    rank = {t: ranks_from_scores(scores, targets, rows, cols, t) for t in TIES_ALL}
    assert (rank["optimistic"] <= rank["realistic"]).all()
    assert (rank["realistic"] <= rank["pessimistic"]).all()
    assert (rank["optimistic"] <= rank["ordinal"]).all()
    assert (rank["ordinal"] <= rank["pessimistic"]).all()
    assert torch.equal(rank["realistic"], (rank["optimistic"] + rank["pessimistic"]) / 2)
    filtered = torch.zeros_like(scores, dtype=torch.bool)
    filtered[rows, cols] = True
    filtered[torch.arange(len(targets)), targets] = True
    candidates = (~filtered).sum(1).double()  # entities the target competes with
    assert (rank["optimistic"] >= 1).all() and (rank["pessimistic"] <= candidates + 1).all()


@settings(max_examples=80, deadline=None)
@given(query=queries(), extra=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 5))))
def test_filtering_more_never_worsens_a_rank(query, extra):
    scores, targets, rows, cols = query
    n = len(targets)
    more_rows = torch.cat([rows, torch.tensor([r % n for r, _ in extra], dtype=torch.long)])
    more_cols = torch.cat([cols, torch.tensor([c for _, c in extra], dtype=torch.long)])
    for ties in TIES_ALL:
        before = ranks_from_scores(scores, targets, rows, cols, ties)
        after = ranks_from_scores(scores, targets, more_rows, more_cols, ties)
        assert (after <= before).all()


@settings(max_examples=40, deadline=None)
@given(
    table=st.lists(st.integers(-3, 3), min_size=7 * 7 * 2, max_size=7 * 7 * 2),
    picks=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 1), st.integers(0, 6)), min_size=1),
    max_scores=st.integers(1, 60),
)
def test_chunking_never_changes_ranks(table, picks, max_scores):
    scores = torch.tensor(table, dtype=torch.float).reshape(7, 7, 2)

    def score_fn(side, anchor, relation, span=None):
        full = scores[anchor, :, relation] if side == "tail" else scores[:, anchor, relation].T
        return full if span is None else full[:, span[0] : span[1]]  # max_scores < 7: blocks

    triples = torch.tensor(picks)
    index = TripleIndex(torch.unique(triples, dim=0), 7, 2)
    whole = rank_triples(score_fn, triples, 7, index)
    chunked = rank_triples(score_fn, triples, 7, index, max_scores=max_scores)
    for side in ("head", "tail"):
        assert torch.equal(whole[side], chunked[side])


@settings(max_examples=40, deadline=None)
@given(
    table=st.lists(st.integers(-2, 2), min_size=7 * 7 * 2, max_size=7 * 7 * 2),
    picks=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 1), st.integers(0, 6)), min_size=1),
    rows=st.integers(1, 4),
    span=st.integers(1, 7),
    ties=st.sampled_from(TIES),
)
def test_cache_chunks_and_product_spans_never_change_ranks(table, picks, rows, span, ties):
    """The CPU's cache-sized chunks and blocked products rank as whole rows do, ties too."""
    from vlkge.evaluation import ranking

    scores = torch.tensor(table, dtype=torch.float).reshape(7, 7, 2)

    def score_fn(side, anchor, relation, span=None):
        full = scores[anchor, :, relation] if side == "tail" else scores[:, anchor, relation].T
        return full if span is None else full[:, span[0] : span[1]]

    triples = torch.tensor(picks)
    index = TripleIndex(torch.unique(triples, dim=0), 7, 2)
    whole = rank_triples(score_fn, triples, 7, index, ties=ties)
    score_fn.blocked = True
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ranking, "CACHE_ROWS", rows)
        patch.setattr(ranking, "PRODUCT_SPAN", span)
        blocked = rank_triples(score_fn, triples, 7, index, ties=ties)
    for side in ("head", "tail"):
        assert torch.equal(whole[side], blocked[side])
        for i, (h, r, t) in enumerate(picks):  # against the brute force, from the same index
            anchor, target = (h, t) if side == "tail" else (t, h)
            row = score_fn(side, torch.tensor([anchor]), torch.tensor([r]))[0].tolist()
            _, known = index.known(side, torch.tensor([anchor]), torch.tensor([r]))
            expected = brute_rank(row, target, set(known.tolist()) - {target}, ties)
            assert blocked[side][i] == expected


@pytest.mark.parametrize("ties", TIES)
def test_ranks_in_row_equal_ranks_from_scores(ties):
    generator = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 6, (40,), generator=generator).float()  # many ties
    targets = torch.tensor([0, 7, 7, 19, 39])
    known = torch.tensor([0, 3, 7, 11, 19, 25, 39])
    raw, filtered = ranks_in_row(scores, targets, known, ties)
    rows = scores.unsqueeze(0).expand(len(targets), -1)
    assert torch.equal(raw, ranks_from_scores(rows, targets, ties=ties))
    filter_rows = torch.arange(len(targets)).repeat_interleave(len(known))
    expected = ranks_from_scores(rows, targets, filter_rows, known.repeat(len(targets)), ties)
    assert torch.equal(filtered, expected)
