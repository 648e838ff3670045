"""The native pair gradients (``backbones.native``): plain autograd's gradients of the
per-candidate distances, for every way the pairs can be cut into parts, and a safe build."""

import logging
import shutil

import pytest
import torch

from vlkge.models.backbones import kernels, native

# (a compiler on PATH, not a build: a build here, at import, would land outside the isolated cache)
pytestmark = pytest.mark.skipif(native.find_compiler() is None, reason="no C++ compiler")


def _plain(query, table, ids, kind):
    diff = query.unsqueeze(1) - table[ids]
    if kind == "modulus":
        return torch.complex(*diff.chunk(2, dim=-1)).abs().sum(-1)
    return diff.abs().sum(-1)


def _sorted_pairs(ids):
    flat = ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    return order, order // ids.shape[1], flat[order]


@pytest.mark.parametrize("threads", [1, 2, 3, 7])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", ["l1", "modulus"])
def test_gradients_match_autograd(kind, dtype, threads, monkeypatch):
    """Values of ``query`` and ``table`` rows' gradients as autograd's over a gather, with
    repeated ids, an entity named by most pairs (parts left empty), entities named by none,
    and more threads than entities."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    g = torch.Generator().manual_seed(5)
    query = torch.randn(5, 8, dtype=dtype, generator=g, requires_grad=True)
    table = torch.randn(6, 8, dtype=dtype, generator=g, requires_grad=True)
    ids = torch.randint(1, 4, (5, 9), generator=g)  # entities 0, 4 and 5 never drawn
    ids[:, :6] = 2  # most pairs on one entity
    weights = torch.randn(ids.shape, dtype=dtype, generator=g)
    order, rows, ents = _sorted_pairs(ids)
    got = native.pair_grads(query, table, rows, ents, weights.reshape(-1)[order], kind)
    wanted = torch.autograd.grad(_plain(query, table, ids, kind), (query, table), weights)
    tol = {} if dtype == torch.float64 else {"atol": 1e-5, "rtol": 1e-5}
    for mine, theirs in zip(got, wanted, strict=True):
        torch.testing.assert_close(mine, theirs, **tol)


def test_coincident_points_have_finite_gradients():
    """A query on its candidate: zero gradient, as the compiled kernel's floor gives."""
    query = torch.ones(1, 4, dtype=torch.float64)
    table = torch.ones(1, 4, dtype=torch.float64)
    rows = ents = torch.zeros(1, dtype=torch.long)
    grad = torch.ones(1, dtype=torch.float64)
    got = native.pair_grads(query, table, rows, ents, grad, "modulus")
    expected = kernels._pair_grads(query, table, rows, ents, grad, "modulus")
    for mine, theirs in zip(got, expected, strict=True):
        assert torch.equal(mine, theirs)


def test_candidate_distance_uses_it(monkeypatch):
    """With compiled kernels on, the candidates' backward runs the library (not the
    compiled torch loop) and gives autograd's gradients."""
    monkeypatch.setattr(kernels.Kernels, "enabled", True)
    calls = []

    def eager(fn, kind, *args):  # what the torch kernels run, recorded
        calls.append(fn)
        return fn(*args, kind)

    monkeypatch.setattr(kernels.Kernels, "call", eager)
    g = torch.Generator().manual_seed(6)
    query = torch.randn(4, 6, dtype=torch.float64, generator=g, requires_grad=True)
    table = torch.randn(9, 6, dtype=torch.float64, generator=g, requires_grad=True)
    ids = torch.randint(9, (4, 5), generator=g)
    out = kernels._CandidateDistance.apply(query, table, ids, "modulus")  # forward: compiled
    got = torch.autograd.grad(out.sum(), (query, table))
    wanted = torch.autograd.grad(_plain(query, table, ids, "modulus").sum(), (query, table))
    assert calls == [kernels._pair_distances]  # the forward only
    for mine, theirs in zip(got, wanted, strict=True):
        torch.testing.assert_close(mine, theirs)


def test_not_applicable_gives_none():
    """Other float types and distances are left to the compiled torch code."""
    rows = ents = torch.zeros(1, dtype=torch.long)
    half = torch.ones(1, 4, dtype=torch.bfloat16)
    assert native.pair_grads(half, half, rows, ents, torch.ones(1, dtype=half.dtype), "l1") is None
    full = torch.ones(1, 4)
    assert native.pair_grads(full, full, rows, ents, torch.ones(1), "l2") is None


def test_build_refuses_a_shared_folder(tmp_path, monkeypatch, caplog):
    """A cache folder others can write into is not loaded from (its library would run):
    logged, and ``None``; a private one builds."""
    monkeypatch.setenv("VLKGE_CACHE_DIR", str(tmp_path))
    folder = tmp_path / "native"
    folder.mkdir(parents=True)
    folder.chmod(0o777)
    native.library.cache_clear()
    try:
        with caplog.at_level(logging.WARNING):
            assert native.library() is None
        assert "not private" in caplog.text
        folder.chmod(0o700)
        native.library.cache_clear()
        assert native.library() is not None
        assert [p.suffix for p in folder.iterdir()] == [".so"]  # no scratch left
    finally:
        native.library.cache_clear()


def test_no_compiler_gives_none(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    native.library.cache_clear()
    try:
        assert native.library() is None
    finally:
        native.library.cache_clear()


def test_failed_build_gives_none(tmp_path, monkeypatch, caplog):
    """A compiler that fails: logged, ``None`` (the compiled torch code runs instead)."""
    monkeypatch.setenv("VLKGE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda name: "/bin/false")
    native.library.cache_clear()
    try:
        with caplog.at_level(logging.WARNING):
            assert native.library() is None
        assert "unavailable" in caplog.text
        assert list((tmp_path / "native").iterdir()) == []  # nothing half-built left
    finally:
        native.library.cache_clear()
