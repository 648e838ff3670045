"""Backbones: the three scoring shapes agree, formulas match independent implementations
(torch complex arithmetic and PyKEEN's interaction modules), the candidate distance kernel
and TransE's normalisation have the same values and gradients as plain autograd."""

import pytest
import torch
import torch.nn.functional as F

from vlkge.models.backbones import BACKBONES, ComplEx, DistMult, RotatE, TransE, native
from vlkge.models.backbones import kernels as base
from vlkge.models.backbones.transe import unit

DIM = 6


def make(name, distance="modulus"):
    return (
        RotatE(gamma=3.0, distance=distance)
        if name == "rotate"
        else (TransE(gamma=3.0) if name == "transe" else BACKBONES[name]())
    )


def vectors(backbone, b, e, dim=DIM, seed=0):
    g = torch.Generator().manual_seed(seed)
    width = backbone.entity_parts * dim
    h = torch.randn(b, width, generator=g, dtype=torch.float64)
    r = torch.randn(b, backbone.relation_width(dim), generator=g, dtype=torch.float64)
    table = torch.randn(e, width, generator=g, dtype=torch.float64)
    return h, r, table


@pytest.mark.parametrize(
    "name,distance",
    [
        ("transe", None),
        ("distmult", None),
        ("complex", None),
        ("rotate", "modulus"),
        ("rotate", "l2"),
    ],
)
def test_three_shapes_agree(name, distance):
    backbone = make(name, distance or "modulus")
    h, r, table = vectors(backbone, 4, 9)
    tails = backbone.score_tails(h, r, table)
    heads = backbone.score_heads(table, r, h)  # h plays the known tail
    for b in range(4):
        for e in range(9):
            assert torch.allclose(
                tails[b, e], backbone.score(h[b : b + 1], r[b : b + 1], table[e : e + 1])[0]
            )
            assert torch.allclose(
                heads[b, e], backbone.score(table[e : e + 1], r[b : b + 1], h[b : b + 1])[0]
            )


@pytest.mark.parametrize(
    "name,distance",
    [
        ("transe", None),
        ("distmult", None),
        ("complex", None),
        ("rotate", "modulus"),
        ("rotate", "l2"),
    ],
)
@pytest.mark.parametrize("path", ["sampled", "dense", "gathered"])
def test_candidate_ids_match_full_table(name, distance, path, monkeypatch):
    # sampled: the CPU's sparse products; dense: score all then gather; gathered: gather the
    # candidate vectors (the large-table path off the CPU)
    if path != "sampled":
        monkeypatch.setattr(base, "SPARSE_DTYPES", ())
    monkeypatch.setattr(base, "DENSE_CANDIDATE_RATIO", 1000 if path == "dense" else 0)
    backbone = make(name, distance or "modulus")
    h, r, table = vectors(backbone, 5, 11)
    ids = torch.randint(11, (5, 4), generator=torch.Generator().manual_seed(1))
    for method in (backbone.score_tails, backbone.score_heads):
        full = method(h, r, table) if method == backbone.score_tails else method(table, r, h)
        picked = (
            method(h, r, table, ids) if method == backbone.score_tails else method(table, r, h, ids)
        )
        assert torch.allclose(full.gather(1, ids), picked)


def test_sampled_products_values_and_gradients():
    """The sparse sampled products equal a gather's dot products, repeated ids included, and
    their hand-written backward passes gradcheck."""
    g = torch.Generator().manual_seed(2)
    query = torch.randn(6, 8, dtype=torch.float64, generator=g, requires_grad=True)
    table = torch.randn(20, 8, dtype=torch.float64, generator=g, requires_grad=True)
    ids = torch.randint(20, (6, 7), generator=g)
    ids[0, :3] = 5  # repeats, as sampling with replacement draws them
    expected = (table[ids] * query.unsqueeze(1)).sum(-1)
    assert torch.allclose(base.products(query, table, ids), expected)
    assert torch.autograd.gradcheck(lambda q, t: base.products(q, t, ids), (query, table))


def _plain_distance(diff: torch.Tensor, kind: str) -> torch.Tensor:
    """An independent distance: torch's complex modulus for ``modulus``."""
    if kind == "modulus":
        real, imag = diff.chunk(2, dim=-1)
        return torch.complex(real, imag).abs().sum(-1)
    return diff.abs().sum(-1) if kind == "l1" else diff.norm(dim=-1)


def _assert_matches_autograd(mine, plain, query, table, g) -> None:
    """``mine(query, table)`` gives ``plain``'s values and (randomly weighted) gradients, and
    passes gradcheck."""
    out = mine(query, table)
    weights = torch.randn(out.shape, dtype=torch.float64, generator=g)
    got = torch.autograd.grad(out, (query, table), weights)
    expected = plain(query, table)
    wanted = torch.autograd.grad(expected, (query, table), weights)
    assert torch.allclose(out, expected)
    for a, b in zip(got, wanted, strict=True):
        assert torch.allclose(a, b)
    assert torch.autograd.gradcheck(mine, (query, table))


@pytest.mark.parametrize("path", ["eager", "compiled", "compiled, no native backward"])
@pytest.mark.parametrize("kind", ["l1", "l2", "modulus"])
def test_candidate_distance_gradients(kind, path, monkeypatch):
    """Candidate distances (pairs sorted by entity; eager in chunks of 8 pairs, or compiled,
    the backward native where a C++ compiler builds it, else compiled too) give plain
    autograd's values and gradients over a gather, repeated ids included, and pass
    gradcheck."""
    compiled = path != "eager"
    monkeypatch.setattr(base.Kernels, "enabled", compiled)
    if path == "compiled, no native backward":
        monkeypatch.setattr(native, "library", lambda: None)
    monkeypatch.setattr(base, "BLOCK_ELEMENTS", 8 * 8)
    g = torch.Generator().manual_seed(3)
    query = torch.randn(6, 8, dtype=torch.float64, generator=g, requires_grad=True)
    table = torch.randn(20, 8, dtype=torch.float64, generator=g, requires_grad=True)
    ids = torch.randint(20, (6, 7), generator=g)
    ids[0, :3] = 5  # repeats within a row, as sampling with replacement draws them
    _assert_matches_autograd(
        lambda q, t: base.distances(q, t, ids, kind),
        lambda q, t: _plain_distance(q.unsqueeze(1) - t[ids], kind),
        query,
        table,
        g,
    )
    assert base.Kernels.enabled == compiled  # no silent fallback to eager


@pytest.mark.parametrize("compiled", [False, True])
@pytest.mark.parametrize("kind", ["l1", "modulus"])
def test_all_entity_distance_gradients(kind, compiled, monkeypatch):
    """Distances to every entity with gradients (TransE and RotatE trained 1-vs-all): compiled,
    a backward that forms each padded block of queries' terms on the fly; eager, cdist or
    autograd over blocks. Both give plain autograd's values and gradients and pass gradcheck."""
    monkeypatch.setattr(base.Kernels, "enabled", compiled)
    monkeypatch.setattr(base, "ALL_QUERY_ROWS", 4)  # two blocks, the second padded
    monkeypatch.setattr(base, "ALL_TILE_BYTES", 8 * 8 * 8)  # tiles of 8 entities, then 4
    g = torch.Generator().manual_seed(5)
    query = torch.randn(6, 8, dtype=torch.float64, generator=g, requires_grad=True)
    table = torch.randn(20, 8, dtype=torch.float64, generator=g, requires_grad=True)
    _assert_matches_autograd(
        lambda q, t: base.distances(q, t, None, kind),
        lambda q, t: _plain_distance(q.unsqueeze(1) - t.unsqueeze(0), kind),
        query,
        table,
        g,
    )
    assert base.Kernels.enabled == compiled  # no silent fallback to eager


def test_a_compile_failure_in_the_all_entity_backward_finishes_it_eagerly(monkeypatch):
    """A compile that fails in the backward's first block switches the rest of it to eager
    blocks of bounded size; the gradients are still autograd's."""

    def broken(*args):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(base.Kernels, "enabled", True)
    monkeypatch.setattr(base.Kernels, "cache", {("_all_grad_query", "l1"): broken})
    monkeypatch.setattr(base, "ALL_QUERY_ROWS", 4)
    monkeypatch.setattr(base, "EAGER_BLOCK_ELEMENTS", 20 * 8 * 2)  # eager blocks of 2 queries
    g = torch.Generator().manual_seed(6)
    query = torch.randn(7, 8, dtype=torch.float64, generator=g, requires_grad=True)
    table = torch.randn(20, 8, dtype=torch.float64, generator=g, requires_grad=True)
    weights = torch.randn(7, 20, dtype=torch.float64, generator=g)
    got = torch.autograd.grad(base.distances(query, table, None, "l1"), (query, table), weights)
    plain = _plain_distance(query.unsqueeze(1) - table.unsqueeze(0), "l1")
    wanted = torch.autograd.grad(plain, (query, table), weights)
    for a, b in zip(got, wanted, strict=True):
        assert torch.allclose(a, b)
    assert not base.Kernels.enabled


def test_complex_matches_torch_complex():
    backbone = ComplEx()
    h, r, t = vectors(backbone, 7, 7)
    as_complex = lambda x: torch.complex(*x.chunk(2, dim=-1))  # noqa: E731
    expected = (as_complex(h) * as_complex(r) * as_complex(t).conj()).sum(-1).real
    assert torch.allclose(backbone.score(h, r, t), expected)


def test_rotate_matches_torch_complex():
    h, r, t = vectors(RotatE(), 7, 7)
    hc, tc = torch.complex(*h.chunk(2, -1)), torch.complex(*t.chunk(2, -1))
    diff = hc * torch.polar(torch.ones_like(r), r) - tc
    assert torch.allclose(RotatE(gamma=12.0).score(h, r, t), 12.0 - diff.abs().sum(-1))
    assert torch.allclose(
        RotatE(gamma=12.0, distance="l2").score(h, r, t),
        12.0 - torch.view_as_real(diff).flatten(-2).norm(dim=-1),
    )


def test_transe_normalises_and_uses_l1():
    h, r, t = vectors(TransE(), 5, 5)
    n = lambda x: F.normalize(x, dim=-1)  # noqa: E731
    expected = 12.0 - (n(h) + n(r) - n(t)).abs().sum(-1)
    assert torch.allclose(TransE(gamma=12.0).score(h, r, t), expected)


def test_unit_rows_match_normalize():
    """TransE's normalisation gives F.normalize's values and autograd's gradients, rows at
    and below the norm's floor included, and passes gradcheck."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(7, 5, dtype=torch.float64, generator=g)
    x[2], x[3] = 0.0, 1e-14  # at the floor: F.normalize divides by 1e-12 there
    x.requires_grad_()
    weights = torch.randn(7, 5, dtype=torch.float64, generator=g)
    assert torch.equal(unit(x), F.normalize(x, dim=-1))
    mine = torch.autograd.grad(unit(x), x, weights)[0]
    theirs = torch.autograd.grad(F.normalize(x, dim=-1), x, weights)[0]
    assert torch.allclose(mine, theirs)
    assert torch.autograd.gradcheck(unit, (x[4:].detach().requires_grad_(),))


def test_scores_equal_pykeen_interactions():
    """Same vectors into PyKEEN's interaction modules give the same scores."""
    modules = pytest.importorskip("pykeen.nn.modules")
    g = torch.Generator().manual_seed(5)
    h, r, t = (torch.randn(4, DIM, generator=g) for _ in range(3))
    assert torch.allclose(
        DistMult().score(h, r, t), modules.DistMultInteraction()(h, r, t), atol=1e-5
    )
    hn, rn, tn = (F.normalize(x, dim=-1) for x in (h, r, t))
    ours = TransE(gamma=0.0).score(h, r, t)
    assert torch.allclose(ours, modules.TransEInteraction(p=1)(hn, rn, tn), atol=1e-5)
    hc, rc, tc = (torch.randn(4, DIM, 2, generator=g) for _ in range(3))
    pk = modules.ComplExInteraction()(
        torch.view_as_complex(hc), torch.view_as_complex(rc), torch.view_as_complex(tc)
    )
    flat = lambda x: torch.cat([x[..., 0], x[..., 1]], dim=-1)  # noqa: E731
    assert torch.allclose(ComplEx().score(flat(hc), flat(rc), flat(tc)), pk, atol=1e-5)
    phase = torch.rand(4, DIM, generator=g) * 6.28
    unit = torch.polar(torch.ones_like(phase), phase)
    pk = modules.RotatEInteraction()(torch.view_as_complex(hc), unit, torch.view_as_complex(tc))
    ours = RotatE(gamma=0.0, distance="l2").score(flat(hc), phase, flat(tc))
    assert torch.allclose(ours, pk, atol=1e-5)


@pytest.mark.parametrize("kind", ["l1", "modulus"])
def test_compiled_kernels_match_eager(kind, monkeypatch):
    """The fused torch.compile kernels give the eager values and gradients (padded blocks)."""
    g = torch.Generator().manual_seed(4)
    query = torch.randn(21, 8, generator=g, requires_grad=True)
    table = torch.randn(30, 8, generator=g, requires_grad=True)
    ids = torch.randint(30, (21, 5), generator=g)
    monkeypatch.setattr(base, "BLOCK_ELEMENTS", 8 * 8)  # eager: chunks of 8 pairs
    monkeypatch.setattr(base, "ALL_QUERY_ROWS", 8)  # padded query blocks
    monkeypatch.setattr(base, "ALL_TILE_BYTES", 8 * 8 * 4)  # tiles of 8 entities, then 6
    results = []
    for enabled in (False, True):
        monkeypatch.setattr(base.Kernels, "enabled", enabled)
        query.grad = table.grad = None
        out = base.distances(query, table, ids, kind)
        out.square().sum().backward()
        with torch.no_grad():
            full = base.distances(query, table, None, kind)
        results.append((out.detach(), query.grad.clone(), table.grad.clone(), full))
        assert base.Kernels.enabled == enabled  # no silent fallback to eager
    for eager, compiled in zip(*results, strict=True):
        assert torch.allclose(eager, compiled, atol=1e-4)
