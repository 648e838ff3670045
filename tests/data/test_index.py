"""KnownTriples, TripleIndex and Neighbours against brute-force Python sets and dicts."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes import random_triples
from vlkge.data import index as index_module
from vlkge.data.index import KnownTriples, Neighbours, TripleIndex


@st.composite
def graphs(draw):
    """(triples [n, 3] LongTensor, num_entities, num_relations); may hold duplicates."""
    num_entities = draw(st.integers(1, 12))
    num_relations = draw(st.integers(1, 4))
    triple = st.tuples(
        st.integers(0, num_entities - 1),
        st.integers(0, num_relations - 1),
        st.integers(0, num_entities - 1),
    )
    rows = draw(st.lists(triple, min_size=0, max_size=40))
    return torch.tensor(rows, dtype=torch.long).reshape(-1, 3), num_entities, num_relations


def brute_force(rows, merged=False):
    tails, heads = defaultdict(set), defaultdict(set)
    for h, r, t in rows:
        tails[h, r].add(t)
        heads[t, r].add(h)
        if merged:
            tails[t, r].add(h)
            heads[h, r].add(t)
    if merged:
        assert tails == heads
    return tails, heads


def grouped(rows: torch.Tensor, values: torch.Tensor, n: int) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in range(n)]
    for row, value in zip(rows.tolist(), values.tolist(), strict=True):
        out[row].append(value)
    return out


def all_queries(num_entities, num_relations):
    e = torch.arange(num_entities).repeat_interleave(num_relations)
    r = torch.arange(num_relations).repeat(num_entities)
    return e, r


@settings(max_examples=60, deadline=None)
@given(graphs(), st.booleans())
def test_matches_brute_force(graph, merged):
    triples, num_entities, num_relations = graph
    rows = {tuple(t) for t in triples.tolist()}
    index = TripleIndex(triples, num_entities, num_relations, merged=merged)

    # membership over every possible triple
    h, r, t = torch.cartesian_prod(
        torch.arange(num_entities), torch.arange(num_relations), torch.arange(num_entities)
    ).unbind(-1)
    got = index.contains(h, r, t).tolist()
    expected = [
        (a, b, c) in rows for a, b, c in zip(h.tolist(), r.tolist(), t.tolist(), strict=True)
    ]
    assert got == expected

    # lookups for every (entity, relation) query, on both sides
    tails, heads = brute_force(rows, merged)
    anchors, relations = all_queries(num_entities, num_relations)
    for side, truth in (("tail", tails), ("head", heads)):
        q_rows, values = index.known(side, anchors, relations)
        assert q_rows.shape == values.shape
        answers = grouped(q_rows, values, len(anchors))
        for i, (a, b) in enumerate(zip(anchors.tolist(), relations.tolist(), strict=True)):
            assert set(answers[i]) == truth.get((a, b), set()), (side, a, b)
    if merged:
        assert index.tails is index.heads


@settings(max_examples=50, deadline=None)
@given(graphs())
def test_counts_on_distinct_triples(graph):
    triples, num_entities, num_relations = graph
    triples = torch.unique(triples, dim=0) if len(triples) else triples
    index = TripleIndex(triples, num_entities, num_relations)
    tails, heads = brute_force(triples.tolist())
    anchors, relations = all_queries(num_entities, num_relations)
    keys = anchors * num_relations + relations
    assert index.tails.counts(keys).tolist() == [
        len(tails.get((a, b), ()))
        for a, b in zip(anchors.tolist(), relations.tolist(), strict=True)
    ]
    assert index.heads.counts(keys).tolist() == [
        len(heads.get((a, b), ()))
        for a, b in zip(anchors.tolist(), relations.tolist(), strict=True)
    ]


@settings(max_examples=50, deadline=None)
@given(graphs())
def test_known_triples_match_the_index(graph):
    """The compact form (sorted codes and head keys; duplicates in the input) answers
    membership and answer counts of every query as the full index does."""
    triples, num_entities, num_relations = graph
    known = KnownTriples(triples, num_entities, num_relations)
    index = TripleIndex(triples, num_entities, num_relations)
    h, r, t = torch.cartesian_prod(
        torch.arange(num_entities), torch.arange(num_relations), torch.arange(num_entities)
    ).unbind(-1)
    assert torch.equal(known.contains(h, r, t), index.contains(h, r, t))
    anchors, relations = all_queries(num_entities, num_relations)
    for side in ("tail", "head"):
        got = known.counts(side, anchors, relations)
        assert torch.equal(got, index.counts(side, anchors, relations)), side


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 9)), max_size=60),
    st.lists(st.integers(-3, 35), max_size=20),
)
def test_neighbours_lookup(pairs, query):
    keys = torch.tensor([k for k, _ in pairs], dtype=torch.long)
    values = torch.tensor([v for _, v in pairs], dtype=torch.long)
    neighbours = Neighbours(keys, values)
    truth = defaultdict(list)
    for k, v in sorted(set(pairs)):
        truth[k].append(v)
    q = torch.tensor(query, dtype=torch.long)
    rows, got = neighbours.lookup(q)
    answers = grouped(rows, got, len(query))
    for i, k in enumerate(query):
        # every distinct value of the key
        assert sorted(answers[i]) == sorted(truth.get(k, []))
    assert neighbours.counts(q).tolist() == [len(truth.get(k, [])) for k in query]
    # rows are non-decreasing: the values of query i come before those of query i + 1
    assert rows.tolist() == sorted(rows.tolist())
    for k in query:  # one key at a time (a served prediction)
        rows, got = neighbours.lookup(torch.tensor([k]))
        assert rows.tolist() == [0] * len(got)
        assert sorted(got.tolist()) == sorted(truth.get(k, []))


def test_broadcasting_contains():
    triples = torch.tensor([[0, 0, 1], [1, 1, 2], [2, 0, 0]])
    index = TripleIndex(triples, num_entities=3, num_relations=2)
    h = torch.tensor([[0], [1], [2]])  # [3, 1]
    r = torch.tensor([[0], [1], [0]])
    candidates = torch.arange(3).unsqueeze(0)  # [1, 3]
    mask = index.contains(h, r, candidates)
    assert mask.shape == (3, 3)
    assert mask.tolist() == [[False, True, False], [False, False, True], [True, False, False]]


def test_empty_index():
    index = TripleIndex(torch.empty(0, 3, dtype=torch.long), 5, 2)
    assert not index.contains(torch.tensor([0]), torch.tensor([0]), torch.tensor([1])).any()
    rows, values = index.known("tail", torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert rows.numel() == 0 and values.numel() == 0
    assert index.tails.counts(torch.tensor([0, 3])).tolist() == [0, 0]


def test_merged_over_filters():
    # (a, r, b) and (c, r, a): for the tail query (a, r, ?) the merged map also holds c
    a, b, c = 0, 1, 2
    triples = torch.tensor([[a, 0, b], [c, 0, a]])
    separate = TripleIndex(triples, 3, 1)
    merged = TripleIndex(triples, 3, 1, merged=True)
    _, tails = separate.known("tail", torch.tensor([a]), torch.tensor([0]))
    assert tails.tolist() == [b]
    _, merged_tails = merged.known("tail", torch.tensor([a]), torch.tensor([0]))
    assert sorted(merged_tails.tolist()) == [b, c]
    _, merged_heads = merged.known("head", torch.tensor([a]), torch.tensor([0]))
    assert sorted(merged_heads.tolist()) == [b, c]


@pytest.mark.parametrize("merged", [False, True])
def test_large_ids_do_not_overflow(merged):
    # FB15k-237 scale: codes up to ~ 14,541 * 474 * 14,541
    n, m = 14_541, 474
    triples = torch.tensor([[n - 1, m - 1, n - 2], [0, 0, n - 1], [n - 2, m - 1, n - 1]])
    index = TripleIndex(triples, n, m, merged=merged)
    assert index.contains(*triples.unbind(-1)).all()
    assert not index.contains(torch.tensor(n - 1), torch.tensor(m - 1), torch.tensor(n - 1))
    _, tails = index.known("tail", torch.tensor([n - 1]), torch.tensor([m - 1]))
    assert set(tails.tolist()) == {n - 2}


def test_membership_prefilter_passes_every_known_triple_and_few_others():
    """`contains` searches only the codes that pass the hashed prefilter: every known triple
    passes it, about one other code in 16 does, and the answers equal a Python set's."""
    g = torch.Generator().manual_seed(0)
    num_entities, num_relations = 50, 4
    triples = random_triples(300, num_entities, num_relations, g)
    known = KnownTriples(triples, num_entities, num_relations)
    h, r, t = torch.cartesian_prod(
        torch.arange(num_entities), torch.arange(num_relations), torch.arange(num_entities)
    ).unbind(-1)
    truth = {tuple(x) for x in triples.tolist()}
    expected = torch.tensor(
        [(a, b, c) in truth for a, b, c in zip(h.tolist(), r.tolist(), t.tolist(), strict=True)]
    )
    assert torch.equal(known.contains(h, r, t), expected)
    bits = known.slots.numel().bit_length() - 1
    passed = known.slots[index_module._hashed(known.encode(h, r, t), bits)]
    assert passed[expected].all()
    assert 0 < passed[~expected].float().mean() < 0.15
