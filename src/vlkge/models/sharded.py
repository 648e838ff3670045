"""Entity tables sharded by rows across ``torchrun`` ranks (``distributed.shard_tables``,
docs/scaling.md, "Sharded entity tables").

Rank k owns the entities ``bounds[k] <= id < bounds[k + 1]`` (contiguous, near-equal slices)
and, of every per-entity learned table (the structural table, the structural parts of a fused
representation, the free imaginary rows of complex backbones), the rows of those entities:
tables indexed by their own row numbers (only seen entities have a structural row) are cut at
the same entity boundaries, so a rank's entities have their rows on that rank.

:class:`ShardedEmbedding` replaces such an :class:`~vlkge.models.representations.Embedding`.
Its ``forward(ids)`` is a collective: the ids go to their owners and the rows come back
(:func:`vlkge.distributed.exchange`); with gradients enabled the rows come back as a leaf
tensor kept in :attr:`ShardedEmbedding.fetched`, whose gradient the trainer sends back to the
owners (:mod:`vlkge.training.sharded`). Every rank must therefore call the representation the
same number of times in the same order. The local slice is a buffer, not a parameter: the
replicated optimiser and the all-reduce of gradients never see it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vlkge import distributed
from vlkge.errors import VlkgeError
from vlkge.models.representations import Embedding, Representation, dropped

#: values per block when drawing the other ranks' rows of a table (16 MiB of float32,
#: :meth:`ShardedEmbedding.drawn`)
DRAW_BLOCK = 2**22


def entity_bounds(count: int, world: int) -> list[int]:
    """``world + 1`` boundaries cutting ``count`` entities into near-equal contiguous slices."""
    if count < world:
        raise VlkgeError(f"cannot shard {count} entities across {world} ranks")
    return [count * k // world for k in range(world + 1)]


@dataclass
class Fetched:
    """Rows fetched in one call: their ids (sorted, unique), the rows (a leaf tensor), and
    what this rank served: the ids asked by the other ranks and how many per rank."""

    ids: torch.Tensor
    rows: torch.Tensor
    counts: torch.Tensor
    served: torch.Tensor


class ShardedEmbedding(Representation):
    """The rows ``bounds[rank] <= row < bounds[rank + 1]`` of a ``count x width`` table."""

    def __init__(
        self,
        count: int,
        width: int,
        bounds: list[int],
        rank: int,
        rows: torch.Tensor,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.count, self.width, self.dropout = count, width, dropout
        self.bounds, self.rank = bounds, rank
        self.lo, self.hi = bounds[rank], bounds[rank + 1]
        self.register_buffer("weight", rows)
        ends = torch.tensor(bounds[1:], device=rows.device)
        self.register_buffer("ends", ends, persistent=False)
        self.fetched: list[Fetched] = []

    @classmethod
    def of(cls, table: Embedding, bounds: list[int], rank: int) -> ShardedEmbedding:
        """This rank's rows of a whole ``table``."""
        rows = table.weight.detach()[bounds[rank] : bounds[rank + 1]].clone()
        return cls(table.count, table.width, bounds, rank, rows, table.dropout)

    @classmethod
    def drawn(
        cls, count: int, width: int, bounds: list[int], rank: int, dropout: float = 0.0
    ) -> ShardedEmbedding:
        """This rank's rows of ``Embedding(count, width)`` (Xavier-uniform) without the whole
        table: every row's values are drawn from the global generator in the table's order, the
        other ranks' into a scratch block of :data:`DRAW_BLOCK` values, so the rows are bit for bit
        those of one process and the generator ends where the whole table's draw leaves it
        (CPU ``uniform_`` draws element by element); memory is the shard plus the block."""
        bound = math.sqrt(3.0) * math.sqrt(2.0 / float(width + count))  # nn.init.xavier_uniform_
        lo, hi = bounds[rank], bounds[rank + 1]
        scratch = torch.empty(max(1, min(DRAW_BLOCK // width, count)), width)

        def skip(rows: int) -> None:
            for start in range(0, rows, len(scratch)):
                scratch[: min(len(scratch), rows - start)].uniform_(-bound, bound)

        skip(lo)
        mine = torch.empty(hi - lo, width).uniform_(-bound, bound)
        skip(count - hi)
        return cls(count, width, bounds, rank, mine, dropout)

    def owners(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.searchsorted(self.ends, ids, right=True)

    def counts(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows per owner of sorted ``ids``."""
        return torch.bincount(self.owners(ids), minlength=len(self.bounds) - 1)

    def forward(self, index: torch.Tensor | None = None) -> torch.Tensor:
        if index is None:
            raise VlkgeError("a sharded entity table is never whole on one rank")
        ids, inverse = torch.unique(index.reshape(-1), return_inverse=True)
        counts = self.counts(ids)
        served, served_counts = distributed.exchange(ids, counts)
        rows, _ = distributed.exchange(self.weight[served - self.lo], served_counts)
        if torch.is_grad_enabled():
            rows.requires_grad_(True)
            self.fetched.append(Fetched(ids, rows, counts, served))
        out = F.embedding(inverse, rows).reshape(*index.shape, self.width)
        return dropped(out, self.dropout, self.training)

    def extra_repr(self) -> str:
        return f"count={self.count}, width={self.width}, rows={self.lo}..{self.hi}"


def entity_rows(
    mask: torch.Tensor, width: int, shard: tuple[int, int] | None, dropout: float = 0.0
) -> Embedding | ShardedEmbedding:
    """A learned table with a row for each entity in ``mask`` (in entity order): whole, or
    with ``shard = (rank, world)`` only the rows of the rank's entities, drawn as one process
    draws them (:meth:`ShardedEmbedding.drawn`), so the table is never whole on a rank; rows
    dropped out in training with probability ``dropout``."""
    count = int(mask.sum())
    if shard is None:
        return Embedding(count, width, dropout=dropout)
    rank, world = shard
    bounds = _row_bounds(mask, entity_bounds(len(mask), world))
    return ShardedEmbedding.drawn(count, width, bounds, rank, dropout)


def _row_bounds(mask: torch.Tensor, bounds: list[int]) -> list[int]:
    """Row boundaries of a table holding rows only for the entities in ``mask`` (in entity
    order): the rows of the entities ``bounds[k] <= id < bounds[k + 1]``."""
    before = torch.cat([torch.zeros(1, dtype=torch.long), mask.cpu().long().cumsum(0)])
    return [int(before[b]) for b in bounds]


def shard_model(model: nn.Module, rank: int, world: int) -> list[int]:
    """Replace every per-entity learned table of ``model.entities`` by its rank's rows;
    returns the entity boundaries. Fails in one line on a model whose entity tables cannot
    be sharded (neighbour borrowing reads the whole structural table)."""
    entities = model.entities
    bounds = entity_bounds(entities.count, world)
    if getattr(entities, "neighbours", 0) or getattr(
        getattr(entities, "real", None), "neighbours", 0
    ):
        raise VlkgeError("distributed.shard_tables does not work with model.neighbours > 0")
    model.entity_shard = (bounds[rank], bounds[rank + 1])
    if isinstance(entities, ShardedEmbedding):  # drawn sharded (ShardedEmbedding.drawn)
        return bounds
    if isinstance(entities, Embedding):  # the structural model: rows are entity ids
        model.entities = ShardedEmbedding.of(entities, bounds, rank)
        return bounds
    found = [
        (module, name, child)
        for module in entities.modules()
        for name, child in module.named_children()
        if isinstance(child, Embedding)
    ]
    for module, name, table in found:
        rows = _row_map(module, name)
        setattr(module, name, ShardedEmbedding.of(table, _row_bounds(rows >= 0, bounds), rank))
    return bounds


def _row_map(module: nn.Module, name: str) -> torch.Tensor:
    """The entity -> row map that ``module`` keeps for its table ``name``."""
    maps = {"structural": "struct_row", "free": "free_row"}
    if name not in maps:
        raise VlkgeError(f"distributed.shard_tables cannot shard the table {name!r}")
    return getattr(module, maps[name])


def sharded_tables(model: nn.Module) -> Iterator[tuple[str, ShardedEmbedding]]:
    """The model's sharded tables with their state-dict prefixes, in a fixed order."""
    for name, module in model.named_modules():
        if isinstance(module, ShardedEmbedding):
            yield name, module


def entity_shard(model: nn.Module) -> tuple[int, int] | None:
    """The entities ``lo <= id < hi`` whose rows this rank holds (``None``: not sharded)."""
    return getattr(model, "entity_shard", None)
