"""Sparse indexes over known triples: membership tests and (entity, relation) -> entities maps.

Used to filter rankings and to reject known positives when sampling negatives. Everything is
sorted integer keys plus CSR offsets, so memory is linear in the number of triples and no
dense entities-by-entities structure is ever built. Lookups for a whole batch are vectorised.
"""

from __future__ import annotations

import copy
import functools

import torch


def _moved(index, device: torch.device | str):
    """A shallow copy of ``index`` with its tensors (and its nested indexes') on ``device``."""
    out = copy.copy(index)
    for name, value in vars(index).items():
        if isinstance(value, (torch.Tensor, Neighbours)):
            setattr(out, name, value.to(device))
    return out


#: slots of :attr:`KnownTriples.slots` per known triple (a power of two at least this), and
#: the largest table, 2 ** 28 slots of one byte
PREFILTER_SLOTS, PREFILTER_MAX_BITS = 16, 28
#: Fibonacci hashing's multiplier (2 ** 64 / golden ratio, as a signed int64)
_GOLDEN = -7046029254386353131


def _hashed(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Slot of each int64 code in a table of ``2 ** bits``: the top bits of code x golden
    ratio (multiplication wraps around, as int64 tensors do on every device)."""
    return (codes * _GOLDEN >> (64 - bits)) & ((1 << bits) - 1)


class Neighbours:
    """A CSR map from integer keys to lists of entity ids."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        # sort by (key, value) and drop repeated pairs, so counts are distinct entities; one
        # int64 code per pair (torch.unique over rows is 10-100x slower than over a vector)
        bound = int(values.max()) + 1 if len(values) else 1
        codes = torch.unique(keys.long() * bound + values.long())
        keys, values = codes // bound, codes % bound
        self.keys, counts = torch.unique_consecutive(keys, return_counts=True)
        self.offsets = torch.zeros(len(self.keys) + 1, dtype=torch.long)
        self.offsets[1:] = torch.cumsum(counts, 0)
        self.values = values

    def to(self, device: torch.device | str) -> Neighbours:
        """This map on ``device`` (a copy; lookups then take and return tensors there)."""
        return _moved(self, device)

    def locate(self, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Start offset and number of values of each query key (0 values if unknown)."""
        if len(self.keys) == 0:
            zero = torch.zeros_like(query)
            return zero, zero
        query = query.contiguous()
        pos = torch.searchsorted(self.keys, query).clamp_max(len(self.keys) - 1)
        found = self.keys[pos] == query
        start = torch.where(found, self.offsets[pos], 0)
        return start, torch.where(found, self.offsets[pos + 1] - self.offsets[pos], 0)

    def lookup(self, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For query keys ``[Q]``, return ``(rows, values)``: every value of every query, with
        the query row it belongs to (both ``[total]``)."""
        start, counts = self.locate(query)
        if len(query) == 1:  # one query (a served prediction): a slice, no index arithmetic
            first, count = int(start[0]), int(counts[0])
            zero = torch.zeros(count, dtype=torch.long, device=query.device)
            return zero, self.values[first : first + count].clone()
        rows = torch.repeat_interleave(torch.arange(len(query), device=query.device), counts)
        first = torch.cumsum(counts, 0) - counts
        within = torch.arange(len(rows), device=query.device) - torch.repeat_interleave(
            first, counts
        )
        return rows, self.values[torch.repeat_interleave(start, counts) + within]

    def counts(self, query: torch.Tensor) -> torch.Tensor:
        """How many values each query key has."""
        return self.locate(query)[1]


class KnownTriples:
    """Known triples over ``num_entities`` x ``num_relations``: membership tests and the number
    of known answers of each query, from two sorted int64 arrays (16 bytes per triple). What
    negative sampling needs; :class:`TripleIndex` also lists the answers, for filtered ranking.
    """

    def __init__(self, triples: torch.Tensor, num_entities: int, num_relations: int):
        self.num_entities, self.num_relations = num_entities, num_relations
        self.codes = torch.unique(self.encode(*triples.long().unbind(-1)))  # sorted: (h, r, t)

    @functools.cached_property
    def head_keys(self) -> torch.Tensor:
        """The sorted ``t * num_relations + r`` keys of the distinct triples (the counts of
        head queries), built from one copy of the codes."""
        keys = self.codes % self.num_entities
        relation = self.codes.div(self.num_entities, rounding_mode="floor")
        keys.mul_(self.num_relations).add_(relation.remainder_(self.num_relations))
        del relation
        return torch.sort(keys).values

    def to(self, device: torch.device | str) -> KnownTriples:
        """This index on ``device`` (a copy; tests then take and return tensors there)."""
        return _moved(self, device)

    def encode(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (h * self.num_relations + r) * self.num_entities + t

    @functools.cached_property
    def slots(self) -> torch.Tensor:
        """A membership prefilter: ``slots[hash(code)]`` is true for every known triple's code
        and, with ``PREFILTER_SLOTS`` slots per triple, for about one other code in 16. A
        lookup there is a gather, ten times faster than a binary search in ``codes``, and
        only the few codes that pass it are searched."""
        bits = max(10, min(PREFILTER_MAX_BITS, (PREFILTER_SLOTS * len(self.codes)).bit_length()))
        slots = torch.zeros(1 << bits, dtype=torch.bool, device=self.codes.device)
        slots[_hashed(self.codes, bits)] = True
        return slots

    def contains(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Boolean: is each (h, r, t) a known triple? Shapes broadcast."""
        code = self.encode(h, r, t)
        if len(self.codes) == 0:
            return torch.zeros_like(code, dtype=torch.bool)
        flat = code.reshape(-1)
        bits = self.slots.numel().bit_length() - 1
        maybe = self.slots[_hashed(flat, bits)].nonzero().squeeze(1)
        candidates = flat[maybe]
        pos = torch.searchsorted(self.codes, candidates).clamp_max(len(self.codes) - 1)
        found = torch.zeros_like(flat, dtype=torch.bool)
        found[maybe] = self.codes[pos] == candidates
        return found.view(code.shape)

    def counts(self, side: str, anchor: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        """How many known answers each query has: tails of ``(anchor, relation, ?)`` when
        ``side`` is ``tail``, heads of ``(?, relation, anchor)`` when it is ``head``."""
        key = anchor * self.num_relations + relation
        if side == "tail":  # the codes of (anchor, relation, .) are one sorted run
            first = key * self.num_entities
            return torch.searchsorted(self.codes, first + self.num_entities) - torch.searchsorted(
                self.codes, first
            )
        right = torch.searchsorted(self.head_keys, key, right=True)
        return right - torch.searchsorted(self.head_keys, key)


class TripleIndex(KnownTriples):
    """Known triples over ``num_entities`` x ``num_relations`` for filtering and sampling.

    ``tails`` maps (h, r) to the known tails, ``heads`` maps (r, t) to the known heads. With
    ``merged=True`` both directions share one map keyed by (entity, relation) that holds the
    tails of (e, r, .) and the heads of (., r, e): the VL-KGE reference implementation's
    filter, kept for paper compatibility only (it over-filters).
    """

    def __init__(
        self, triples: torch.Tensor, num_entities: int, num_relations: int, merged: bool = False
    ):
        super().__init__(triples, num_entities, num_relations)
        h, t = self.codes // (num_relations * num_entities), self.codes % num_entities
        r = self.codes // num_entities % num_relations
        if merged:
            both = Neighbours(
                torch.cat([h * num_relations + r, t * num_relations + r]), torch.cat([t, h])
            )
            self.tails = self.heads = both
        else:
            self.tails = Neighbours(h * num_relations + r, t)
            self.heads = Neighbours(t * num_relations + r, h)

    def counts(self, side: str, anchor: torch.Tensor, relation: torch.Tensor) -> torch.Tensor:
        neighbours = self.tails if side == "tail" else self.heads
        return neighbours.counts(anchor * self.num_relations + relation)

    def known(self, side: str, anchor: torch.Tensor, relation: torch.Tensor):
        """``(rows, entities)`` of known answers for queries on ``side`` (see Neighbours)."""
        neighbours = self.tails if side == "tail" else self.heads
        return neighbours.lookup(anchor * self.num_relations + relation)
