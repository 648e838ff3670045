"""The interaction (scoring) function interface every backbone implements.

A backbone sees only vectors: entity vectors of width ``entity_parts * dim`` (two parts, real
and imaginary, for complex backbones) and relation vectors of width ``relation_width(dim)``.
Where those vectors come from (a structural table, frozen image/text features, a fusion of
both) is the representation's business, so any representation plugs into any backbone.

Three shapes, following LibKGE, each a matrix product or a broadcast, never a Python loop over
queries:

- ``score(h, r, t)``: ``[B, D]`` each, one triple per row -> ``[B]``;
- ``score_tails(h, r, t, ids=None)``: queries ``(h, r, ?)`` against the candidate table ``t``
  of shape ``[E, D]`` -> ``[B, E]``; with ``ids`` ``[B, N]`` only those rows of the table, per
  query -> ``[B, N]`` (negative sampling);
- ``score_heads(h, r, t, ids=None)``: ``(?, r, t)`` against the table ``h``, likewise.
"""

from __future__ import annotations

import logging
import shutil

import torch
import torch.nn.functional as F
from torch import nn

from vlkge.models.backbones.complex_ops import halves

#: score the whole table and pick the candidates when entities <= this many times candidates
DENSE_CANDIDATE_RATIO = 200
#: elements of the ``[b, N, D]`` block a candidate distance materialises at once
BLOCK_ELEMENTS = 1 << 20
#: query rows per call of a compiled all-entity distance kernel (the last block is padded)
COMPILED_BLOCK_ROWS = 128

log = logging.getLogger(__name__)


class Interaction(nn.Module):
    """Base class of backbones; subclasses implement the three scoring shapes."""

    #: entity vectors are ``entity_parts * dim`` wide (2 for complex-valued backbones)
    entity_parts: int = 1

    def relation_width(self, dim: int) -> int:
        return self.entity_parts * dim

    def init_relations(self, weight: torch.Tensor) -> None:
        """Initialise a relation table in place (Xavier-uniform unless a backbone overrides)."""
        nn.init.xavier_uniform_(weight)

    def score(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score_tails(self, h, r, t, ids: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def score_heads(self, h, r, t, ids: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


def products(query: torch.Tensor, table: torch.Tensor, ids: torch.Tensor | None) -> torch.Tensor:
    """Inner products of each query with the table rows (all, or ``ids`` per query).

    For per-query ids, one ``[B, E]`` matrix product plus a gather is much faster than
    gathering ``[B, N, D]`` vectors unless the table is far larger than N.
    """
    if ids is None:
        return query @ table.T
    if table.shape[0] <= DENSE_CANDIDATE_RATIO * ids.shape[1]:
        return (query @ table.T).gather(1, ids)
    return torch.bmm(F.embedding(ids, table), query.unsqueeze(-1)).squeeze(-1)


def _l1(diff: torch.Tensor) -> torch.Tensor:
    return diff.abs().sum(-1)


def _l1_grad(diff: torch.Tensor) -> torch.Tensor:
    return diff.sign()


def _l2(diff: torch.Tensor) -> torch.Tensor:
    return diff.norm(dim=-1)


def _modulus(diff: torch.Tensor) -> torch.Tensor:
    """Sum over complex coordinates of |diff_k| (real and imaginary halves)."""
    real, imag = halves(diff)
    # the clamp keeps the gradient finite where two points coincide
    return (real.square() + imag.square()).clamp_min(1e-18).sqrt().sum(-1)


def _modulus_grad(diff: torch.Tensor) -> torch.Tensor:
    real, imag = halves(diff)
    inv = (real.square() + imag.square()).clamp_min(1e-18).rsqrt()
    return torch.cat([real * inv, imag * inv], dim=-1)


#: distance of a difference vector, and its gradient (for the blockwise candidate kernel)
DISTANCES = {"l1": (_l1, _l1_grad), "l2": (_l2, None), "modulus": (_modulus, _modulus_grad)}


class _CandidateDistance(torch.autograd.Function):
    """dist(query_b, table[ids_bn]) in blocks, with a hand-written backward.

    Autograd through a gather of ``[B, N, D]`` vectors spends most of its time materialising
    and scattering that tensor; here each block is rebuilt in the backward pass and the table
    gradient is accumulated with ``index_add_``, keeping the working set in cache.
    """

    @staticmethod
    def forward(ctx, query, table, ids, kind):
        ctx.save_for_backward(query, table, ids)
        ctx.kind = kind
        dist_fn = DISTANCES[kind][0]
        out = query.new_empty(ids.shape)
        rows = max(1, BLOCK_ELEMENTS // max(1, ids.shape[1] * table.shape[1]))
        for start in range(0, len(query), rows):
            block = slice(start, start + rows)
            out[block] = dist_fn(query[block].unsqueeze(1) - table[ids[block]])
        return out

    @staticmethod
    def backward(ctx, grad):
        query, table, ids = ctx.saved_tensors
        grad_fn = DISTANCES[ctx.kind][1]
        grad_query = torch.empty_like(query) if ctx.needs_input_grad[0] else None
        grad_table = torch.zeros_like(table) if ctx.needs_input_grad[1] else None
        rows = max(1, BLOCK_ELEMENTS // max(1, ids.shape[1] * table.shape[1]))
        for start in range(0, len(query), rows):
            block = slice(start, start + rows)
            diff = query[block].unsqueeze(1) - table[ids[block]]
            local = grad_fn(diff)
            local.mul_(grad[block].unsqueeze(-1))
            if grad_query is not None:
                grad_query[block] = local.sum(1)
            if grad_table is not None:
                grad_table.index_add_(
                    0, ids[block].reshape(-1), local.reshape(-1, table.shape[1]), alpha=-1
                )
        return grad_query, grad_table, None, None


class _Compiled:
    """Fused kernels for distances against all entities (evaluation, prediction).

    Eager broadcasting materialises ``[b, E, D]`` differences and is memory-bound; cdist's L1
    kernel is better but far from the hardware. ``torch.compile`` fuses difference, absolute
    value (or complex modulus) and sum into one loop: 7x faster than cdist for L1 and 50x
    faster than eager for the RotatE modulus here. Used only without gradients, when enabled
    (``evaluation.compile``) and a C++ compiler is present; any failure falls back to eager.
    """

    enabled = False
    kernels: dict[str, object] = {}

    @classmethod
    def configure(cls, setting: str | bool) -> None:
        found = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
        cls.enabled = bool(found) if setting == "auto" else bool(setting)

    @classmethod
    def run(cls, query: torch.Tensor, table: torch.Tensor, kind: str) -> torch.Tensor | None:
        if (
            not cls.enabled
            or torch.is_grad_enabled()
            and (query.requires_grad or table.requires_grad)
        ):
            return None
        try:
            kernel = cls.kernels.get(kind)
            if kernel is None:
                dist_fn = DISTANCES[kind][0]
                kernel = torch.compile(
                    lambda q, t: dist_fn(q.unsqueeze(1) - t.unsqueeze(0)), dynamic=False
                )
                cls.kernels[kind] = kernel
            rows = COMPILED_BLOCK_ROWS
            out = query.new_empty(len(query), len(table))
            for start in range(0, len(query), rows):
                block = query[start : start + rows]
                if len(block) < rows:
                    block = torch.cat([block, block.new_zeros(rows - len(block), block.shape[1])])
                out[start : start + rows] = kernel(block, table)[: len(query) - start]
            return out
        except Exception as exc:  # no compiler, unsupported platform: eager still works
            log.warning("compiled distance kernels unavailable (%s); using eager code", exc)
            cls.enabled = False
            return None


configure_compiled_distances = _Compiled.configure


def distances(
    query: torch.Tensor, table: torch.Tensor, ids: torch.Tensor | None, kind: str
) -> torch.Tensor:
    """Distances of each query to the table rows (all: ``[B, E]``; ``ids``: ``[B, N]``).

    ``kind`` is ``l1``, ``l2`` or ``modulus`` (sum of complex moduli). ``l2`` is computed
    from inner products; the others build the broadcast difference in bounded blocks.
    """
    if kind == "l2":
        # ||q - t||^2 = |q|^2 + |t|^2 - 2 q.t: a matrix product instead of a broadcast
        sq_table = table.square().sum(-1)
        sq_table = sq_table.unsqueeze(0) if ids is None else sq_table[ids]
        squared = query.square().sum(-1, keepdim=True) + sq_table - 2 * products(query, table, ids)
        return squared.clamp_min(1e-18).sqrt()
    if ids is not None:
        return _CandidateDistance.apply(query, table, ids, kind)
    compiled = _Compiled.run(query, table, kind)
    if compiled is not None:
        return compiled
    if kind == "l1":
        return torch.cdist(query, table, p=1)
    rows = max(1, (BLOCK_ELEMENTS * 16) // max(1, table.numel()))
    return torch.cat(
        [_modulus(block.unsqueeze(1) - table.unsqueeze(0)) for block in query.split(rows)]
    )
