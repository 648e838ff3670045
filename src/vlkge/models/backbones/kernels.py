"""Scoring kernels shared by the backbones: inner products and distances of queries against
a table of entity vectors, either all rows (``[B, E]``) or per-query candidate ids (``[B, N]``).

Inner products are matrix products. Distances (L1 for TransE, the sum of complex moduli for
RotatE) have no matrix-product form. Against all entities they are computed in blocks of
queries against cache-sized tiles of entities; for per-query candidates the ``(query,
candidate)`` pairs are visited in order of entity, with a hand-written backward that adds each
pair's gradient into its rows instead of letting autograd materialise and scatter a ``[B, N,
D]`` gather. With compiled kernels enabled (``compile: auto``, when a C++ compiler is present)
each block, and all the pairs, run as one fused loop made by ``torch.compile`` (their speed-up:
docs/scaling.md, "Compiled distance kernels"), the pairs' backward on the CPU as a C++ loop
over the CPU's threads (:mod:`~vlkge.models.backbones.native`); without a compiler, or on any
compile failure, the same functions run eagerly, the pairs in bounded chunks."""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F

from vlkge.models.backbones import native
from vlkge.models.backbones.complex_ops import halves

log = logging.getLogger(__name__)

#: float types the CPU's sparse sampled products take (others use the dense paths)
SPARSE_DTYPES = (torch.float32, torch.float64)
#: score the whole table and pick the candidates when entities <= this many times candidates
DENSE_CANDIDATE_RATIO = 200
#: elements of the ``[pairs, D]`` difference an eager candidate distance materialises at once
BLOCK_ELEMENTS = 1 << 22
#: a compiled all-entity distance scores blocks of this many queries, in one call, against
#: tiles of entities of at most ``ALL_TILE_BYTES`` one after the other: a tile stays in the
#: core's L2 cache while the block's queries pass over it (scoring each query against the
#: whole table instead read the table from memory once per query: 3x slower for RotatE on
#: WN9-IMG, docs/scaling.md, "Compiled distance kernels")
ALL_QUERY_ROWS = 64
ALL_TILE_BYTES = 1 << 18
#: elements of the ``[b, E, D]`` difference an eager all-entity block materialises
EAGER_BLOCK_ELEMENTS = 1 << 24


def _csr(crow: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, cols, values, shape, check_invariants=False)


class _SampledProducts(torch.autograd.Function):
    """``query_b . table[ids_bn]`` on the CPU through sparse kernels: the forward is a sampled
    matrix product at the ids, the backward two sparse-by-dense products, so nothing of size
    ``[B, N, D]`` or ``[B, E]`` is built (10x faster than the dense product and its gather at
    WN9-IMG's 6,555 entities and N 100). Repeated ids in a row are summed like a gather's."""

    @staticmethod
    def forward(ctx, query, table, ids):
        ctx.save_for_backward(query, table, ids)
        size, num = ids.shape
        crow = torch.arange(0, size * num + 1, num, device=ids.device)
        pattern = _csr(crow, ids.reshape(-1), query.new_zeros(size * num), (size, len(table)))
        products = torch.sparse.sampled_addmm(pattern, query, table.T, beta=0.0)
        return products.values().view(size, num)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        query, table, ids = ctx.saved_tensors
        size, num = ids.shape
        grad, flat = grad.reshape(-1), ids.reshape(-1)
        grad_query = grad_table = None
        if ctx.needs_input_grad[0]:  # row b: sum_n grad_bn table[ids_bn]
            crow = torch.arange(0, size * num + 1, num, device=ids.device)
            grad_query = _csr(crow, flat, grad, (size, len(table))) @ table
        if ctx.needs_input_grad[1]:  # entity e: sum over its occurrences of grad_bn query_b
            order = torch.argsort(flat, stable=True)
            crow = flat.new_zeros(len(table) + 1)
            crow[1:] = torch.bincount(flat, minlength=len(table)).cumsum(0)
            rows = torch.arange(size, device=ids.device).repeat_interleave(num)[order]
            grad_table = _csr(crow, rows, grad[order], (len(table), size)) @ query
        return grad_query, grad_table, None


def products(query: torch.Tensor, table: torch.Tensor, ids: torch.Tensor | None) -> torch.Tensor:
    """Inner products of each query with the table rows (all, or ``ids`` per query).

    For per-query ids on the CPU, sparse sampled products (:class:`_SampledProducts`); on
    other devices one ``[B, E]`` matrix product plus a gather is much faster than gathering
    ``[B, N, D]`` vectors unless the table is far larger than N.
    """
    if ids is None:
        return query @ table.T
    if query.device.type == "cpu" and query.dtype == table.dtype in SPARSE_DTYPES:
        return _SampledProducts.apply(query, table, ids)
    if table.shape[0] <= DENSE_CANDIDATE_RATIO * ids.shape[1]:
        return (query @ table.T).gather(1, ids)
    return torch.bmm(F.embedding(ids, table), query.unsqueeze(-1)).squeeze(-1)


# --- distances of difference vectors and their gradients ------------------------------------
def _l1(diff: torch.Tensor) -> torch.Tensor:
    return diff.abs().sum(-1)


def _l1_grad(diff: torch.Tensor) -> torch.Tensor:
    return diff.sign()


def _modulus(diff: torch.Tensor) -> torch.Tensor:
    """Sum over complex coordinates of |diff_k| (real and imaginary halves)."""
    real, imag = halves(diff)
    # the clamp keeps the gradient finite where two points coincide
    return (real.square() + imag.square()).clamp_min(1e-18).sqrt().sum(-1)


def _modulus_grad(diff: torch.Tensor) -> torch.Tensor:
    real, imag = halves(diff)
    inv = (real.square() + imag.square()).clamp_min(1e-18).rsqrt()
    # halves scaled as one [..., 2, D/2] view, not concatenated: a compiled loop fuses it
    return (diff.unflatten(-1, (2, -1)) * inv.unsqueeze(-2)).flatten(-2)


def _l2(diff: torch.Tensor) -> torch.Tensor:
    return diff.norm(dim=-1)


#: distance of a difference vector along the last axis, and its gradient
DISTANCES = {"l1": (_l1, _l1_grad), "l2": (_l2, None), "modulus": (_modulus, _modulus_grad)}


# --- block functions (run eagerly or compiled) ----------------------------------------------
def _tiles_block(query: torch.Tensor, table: torch.Tensor, span: int, kind: str):
    """Distances ``[Q, E]`` of each query to each row of ``table`` cut into tiles of ``span``
    rows (``E`` a multiple of ``span``): compiled, the loop runs every query against one tile
    before the next (threads take tiles), so the tile is read from memory once."""
    tiles = table.unflatten(0, (-1, span))
    found = DISTANCES[kind][0](query[None, :, None] - tiles.unsqueeze(1))  # [T, Q, span]
    return found.permute(1, 0, 2).flatten(1)


def _pair_distances(query, table, rows, ents, kind: str) -> torch.Tensor:
    """``dist(query[rows_k], table[ents_k])`` for each pair ``k``."""
    return DISTANCES[kind][0](query[rows] - table[ents])


def _pair_local(query, table, rows, ents, grad, kind: str) -> torch.Tensor:
    """``grad_k * d dist / d query`` of each pair ``k`` (``[pairs, D]``; minus it for the
    table)."""
    return DISTANCES[kind][1](query[rows] - table[ents]) * grad.unsqueeze(-1)


def _pair_grads(query, table, rows, ents, grad, kind: str):
    """The gradients of ``sum_k grad_k dist(query[rows_k], table[ents_k])`` with respect to
    the query and the table."""
    local = _pair_local(query, table, rows, ents, grad, kind)
    grad_query = torch.zeros_like(query).index_add_(0, rows, local)
    return grad_query, torch.zeros_like(table).index_add_(0, ents, local, alpha=-1)


class Kernels:
    """Which block functions run compiled; one compiled function per (block, kind)."""

    enabled = False
    cache: dict[tuple[str, str], Callable] = {}
    #: block functions whose inputs' first axis is any length (pairs, queries, entities),
    #: compiled once for all of them; the others are compiled for static shapes
    any_rows = ("_pair_distances", "_pair_grads")
    #: inductor settings by block function: the gradients' loop (where the native one does
    #: not apply) adds into rows that several pairs share, so it runs on one thread
    #: (parallel, each addition would be atomic: 10x slower on two threads)
    options: ClassVar[dict[str, dict]] = {"_pair_grads": {"cpp.threads": 1}}

    @classmethod
    def configure(cls, setting: str | bool) -> None:
        """``auto``: compile when a C++ compiler is on PATH; ``True``/``False`` force it."""
        found = native.find_compiler()  # the one compiler inductor and the library use
        cls.enabled = bool(found) if setting == "auto" else bool(setting)

    @classmethod
    def call(cls, fn: Callable, kind: str, *args):
        """``fn(*args, kind)``, compiled when enabled; a compile failure disables compiling."""
        if cls.enabled:
            key = (fn.__name__, kind)
            if key not in cls.cache:
                # a partial, not a lambda: each block function keeps its own code object, so
                # its shapes do not count against the others' recompile limit (past it,
                # torch runs the block eagerly, 5-10x slower)
                cls.cache[key] = torch.compile(
                    functools.partial(fn, kind=kind),
                    dynamic=None if fn.__name__ in cls.any_rows else False,
                    options=cls.options.get(fn.__name__),
                )
            if fn.__name__ in cls.any_rows:
                for arg in args:
                    torch._dynamo.maybe_mark_dynamic(arg, 0)
            try:
                return cls.cache[key](*args)
            except Exception as exc:  # no working compiler or unsupported platform
                log.warning("compiled kernels unavailable (%s); using eager code", exc)
                cls.enabled = False
        return fn(*args, kind)


configure_kernels = Kernels.configure


def _padded(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """Pad the first axis to ``rows`` with zeros so compiled kernels see one static shape."""
    if len(tensor) == rows:
        return tensor
    return torch.cat([tensor, tensor.new_zeros(rows - len(tensor), *tensor.shape[1:])])


def _block_rows(per_row: int, budget: int) -> int:
    return max(1, budget // max(1, per_row))


class _CandidateDistance(torch.autograd.Function):
    """dist(query_b, table[ids_bn]) with a hand-written backward.

    The ``(b, n)`` pairs are visited in order of entity (one stable sort a call): the table's
    rows are read, and its gradient's rows written, in order, each row reused by all the
    pairs that name it while it is in cache (random rows of a table larger than the cache
    made the pairs memory-bound). Compiled, forward and backward are one fused loop over the
    pairs each, the backward adding each pair's gradient into its query's and its entity's
    rows (on the CPU the native loop, one part of the entities per thread); nothing of size
    ``[B, N, D]`` is built. Eager, the pairs run in bounded chunks.
    """

    @staticmethod
    def forward(ctx, query, table, ids, kind):
        flat = ids.reshape(-1)
        order = torch.argsort(flat, stable=True)
        rows, ents = order // ids.shape[1], flat[order]
        ctx.save_for_backward(query, table, rows, ents, order)
        ctx.kind = kind
        out = query.new_empty(flat.shape)
        chunk = _pair_chunk(table)
        for lo in range(0, len(order), chunk):
            part = slice(lo, lo + chunk)
            found = Kernels.call(_pair_distances, kind, query, table, rows[part], ents[part])
            out[order[part]] = found
        return out.view(ids.shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        query, table, rows, ents, order = ctx.saved_tensors
        grad, kind = grad.reshape(-1)[order], ctx.kind
        if Kernels.enabled:  # one loop over all the pairs: C++ on the CPU, else compiled
            found = native.pair_grads(query, table, rows, ents, grad, kind)
            if found is None:
                found = Kernels.call(_pair_grads, kind, query, table, rows, ents, grad)
            return *found, None, None
        grad_query, grad_table = torch.zeros_like(query), torch.zeros_like(table)
        chunk = _pair_chunk(table)
        for lo in range(0, len(order), chunk):
            part = slice(lo, lo + chunk)
            local = _pair_local(query, table, rows[part], ents[part], grad[part], kind)
            grad_query.index_add_(0, rows[part], local)
            grad_table.index_add_(0, ents[part], local, alpha=-1)
        return grad_query, grad_table, None, None


def _pair_chunk(table: torch.Tensor) -> int:
    """Pairs per call: all of them compiled (fused, nothing per pair is stored), bounded
    chunks of the ``[pairs, D]`` difference eagerly."""
    if Kernels.enabled:
        return 1 << 62
    return _block_rows(table.shape[1], BLOCK_ELEMENTS)


def distances(
    query: torch.Tensor, table: torch.Tensor, ids: torch.Tensor | None, kind: str
) -> torch.Tensor:
    """Distances of each query to the table rows (all: ``[B, E]``; ``ids``: ``[B, N]``).

    ``kind`` is ``l1``, ``l2`` or ``modulus`` (sum of complex moduli). ``l2`` is computed
    from inner products; the others in bounded blocks.
    """
    if kind == "l2":
        # ||q - t||^2 = |q|^2 + |t|^2 - 2 q.t: a matrix product instead of a broadcast
        sq_table = table.square().sum(-1)
        sq_table = sq_table.unsqueeze(0) if ids is None else sq_table[ids]
        squared = query.square().sum(-1, keepdim=True) + sq_table - 2 * products(query, table, ids)
        return squared.clamp_min(1e-18).sqrt()
    if ids is not None:
        return _CandidateDistance.apply(query, table, ids, kind)
    needs_grad = torch.is_grad_enabled() and (query.requires_grad or table.requires_grad)
    if Kernels.enabled:
        if needs_grad:
            return _AllDistance.apply(query, table, kind)
        return _all_distances(query, table, kind)
    if kind == "l1":
        return torch.cdist(query, table, p=1)
    # plain autograd over blocks whose [b, E, D] difference stays bounded
    rows = _block_rows(table.numel(), EAGER_BLOCK_ELEMENTS)
    return torch.cat([_tiles_block(q, table, len(table), kind) for q in query.split(rows)])


def _all_distances(query: torch.Tensor, table: torch.Tensor, kind: str) -> torch.Tensor:
    """Compiled distances ``[B, E]`` of every query to every table row (no autograd): blocks
    of ``ALL_QUERY_ROWS`` queries (the last one padded) against cache-sized tiles."""
    rows = ALL_QUERY_ROWS
    tile = _block_rows(table.shape[1] * table.element_size(), ALL_TILE_BYTES)
    span = max(1, min(len(table), tile))
    whole = len(table) // span * span  # the tiles; the rows left over are one smaller tile
    parts = [(0, whole, span), (whole, len(table), len(table) - whole)]
    out = query.new_empty(len(query), len(table))
    for start in range(0, len(query), rows):
        q = query[start : start + rows]
        padded = _padded(q, rows)
        for lo, hi, size in parts:
            if hi > lo:
                block = Kernels.call(_tiles_block, kind, padded, table[lo:hi], size)
                out[start : start + rows, lo:hi] = block[: len(q)]
    return out


def _all_local(query: torch.Tensor, table: torch.Tensor, grad: torch.Tensor, kind: str):
    """``grad_qe * d dist(query_q, table_e) / d query_q``: ``[Q, E, D]`` terms that a compiled
    reduction forms on the fly (one reduction a function: two reductions of one shared
    expression made inductor store it, 1.3 GB and 3.5x slower for RotatE on FB15k-237)."""
    return DISTANCES[kind][1](query[:, None] - table[None]) * grad.unsqueeze(-1)


def _all_grad_query(query, table, grad, kind: str) -> torch.Tensor:
    """A block of queries' gradient of ``sum_qe grad_qe dist(query_q, table_e)``."""
    return _all_local(query, table, grad, kind).sum(1)


def _all_grad_table(query, table, grad, kind: str) -> torch.Tensor:
    """The table's gradient of the same sum over a block of queries."""
    return _all_local(query, table, grad, kind).sum(0).neg()


class _AllDistance(torch.autograd.Function):
    """Compiled all-entity distances with a backward that never stores the ``[B, E, D]``
    differences (``torch.cdist``'s backward for p = 1 builds them: 2.7 GB for 512 queries at
    WN9-IMG's 6,555 entities and d 200): blocks of ``ALL_QUERY_ROWS`` queries, the last one
    padded with zero gradients, each adding its share of the table's gradient."""

    @staticmethod
    def forward(ctx, query, table, kind):
        ctx.save_for_backward(query, table)
        ctx.kind = kind
        return _all_distances(query, table, kind)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        query, table = ctx.saved_tensors
        grad_query, grad_table = torch.empty_like(query), torch.zeros_like(table)
        start = 0
        while start < len(query):
            # compiled: fixed blocks; once a compile failed, eager blocks of bounded size
            rows = ALL_QUERY_ROWS
            if not Kernels.enabled:
                rows = _block_rows(table.numel(), EAGER_BLOCK_ELEMENTS)
            q, g = query[start : start + rows], grad[start : start + rows]
            block = (_padded(q, rows), table, _padded(g, rows))
            grad_query[start : start + rows] = Kernels.call(_all_grad_query, ctx.kind, *block)[
                : len(q)
            ]
            grad_table += Kernels.call(_all_grad_table, ctx.kind, *block)
            start += rows
        return grad_query, grad_table, None
