"""Negative sampling: N distinct corruptions per positive, rejecting known true triples.

With ``replacement=True`` the N corruptions of a positive are independent draws that may
repeat (still rejecting known true triples): the WikiArt-MKG-v2 protocol.

Vectorised rejection: draw every candidate at once, mark those that are known positives or
repeat an earlier candidate of the same row, redraw only those, until none is left.

The index of known triples and the pools can live on the model's device (:meth:`NegativeSampler.to`):
then the tests run there, while every random number still comes from the CPU generator, so a
seed draws the same negatives on any device (docs/method.md, "Training").

Small dense graphs can leave a query fewer than 2N admissible entities (Nations has queries
with more true answers than non-answers). Such rows draw with replacement from what is
admissible; a query with no admissible entity at all keeps unfiltered negatives.
"""

from __future__ import annotations

import copy

import torch

from vlkge.data.index import KnownTriples, Neighbours
from vlkge.errors import ConfigError

MAX_ROUNDS = 1000


class NegativeSampler:
    """Uniform corruption of heads or tails (a fair coin per positive when ``side="both"``).

    Candidates are all entities, or with ``pools`` (``{"head": Neighbours, "tail":
    Neighbours}`` keyed by relation) only the entities seen on that side of the positive's
    relation in training: the WikiArt-MKG protocol. ``replacement`` drops the requirement that
    a positive's N negatives be distinct.
    """

    def __init__(
        self,
        num_entities: int,
        num: int,
        side: str = "both",
        known: KnownTriples | None = None,
        pools: dict[str, Neighbours] | None = None,
        replacement: bool = False,
    ):
        if num >= num_entities and not replacement:
            raise ConfigError(
                f"training.negatives.num ({num}) must be smaller than the number of "
                f"candidate entities ({num_entities})"
            )
        self.num_entities, self.num, self.side, self.known = num_entities, num, side, known
        self.pools, self.replacement = pools, replacement
        self.device = torch.device("cpu")

    def to(self, device: torch.device | str) -> NegativeSampler:
        """This sampler with its index and pools on ``device``, where it then takes positives
        and returns negatives (on a GPU: no host-side sorting and searching per step)."""
        out = copy.copy(self)
        out.device = torch.device(device)
        out.known = None if self.known is None else self.known.to(device)
        if self.pools is not None:
            out.pools = {side: pool.to(device) for side, pool in self.pools.items()}
        return out

    @staticmethod
    def relation_pools(train: torch.Tensor) -> dict[str, Neighbours]:
        """Per-relation candidate pools: the distinct heads / tails of each relation in train."""
        heads = torch.unique(train[:, [1, 0]], dim=0)
        tails = torch.unique(train[:, [1, 2]], dim=0)
        return {
            "head": Neighbours(heads[:, 0], heads[:, 1]),
            "tail": Neighbours(tails[:, 0], tails[:, 1]),
        }

    def _pool_sizes(self, relation: torch.Tensor, corrupt_head: torch.Tensor) -> torch.Tensor:
        if self.pools is None:
            return torch.full_like(relation, self.num_entities)
        return torch.where(
            corrupt_head, self.pools["head"].counts(relation), self.pools["tail"].counts(relation)
        )

    def _draw(self, relation: torch.Tensor, corrupt_head: torch.Tensor, generator) -> torch.Tensor:
        """One uniform candidate per entry of ``relation`` (any shape)."""
        if self.pools is None:
            drawn = torch.randint(self.num_entities, relation.shape, generator=generator)
            return drawn.to(relation.device)
        u = torch.rand(relation.shape, generator=generator, dtype=torch.float64)
        u = u.to(relation.device)
        out = torch.empty_like(relation)
        for side, rows in (("head", corrupt_head), ("tail", ~corrupt_head)):
            pool = self.pools[side]
            start, size = pool.locate(relation[rows])
            pick = start + (u[rows] * size).long().clamp_max((size - 1).clamp_min(0))
            out[rows] = pool.values[pick]
        return out

    def sample(
        self, positives: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For ``[B, 3]`` positives return ``(corrupt_head [B] bool, negatives [B, N] ids)``."""
        size = len(positives)
        if self.side == "both":
            corrupt_head = (torch.rand(size, generator=generator) < 0.5).to(positives.device)
        else:
            corrupt_head = torch.full((size,), self.side == "head", device=positives.device)
        relation = positives[:, 1:2].expand(size, self.num)
        head_rows = corrupt_head.unsqueeze(1).expand(size, self.num)
        negatives = self._draw(relation, head_rows, generator)
        distinct, filtered = self._admissible(positives, corrupt_head)
        bad = self._invalid(positives, corrupt_head, negatives, distinct, filtered)
        rounds = 0
        while bad.any():
            rounds += 1
            if rounds > MAX_ROUNDS:
                raise ConfigError(
                    "could not draw enough distinct negatives that are not known triples; "
                    "lower training.negatives.num"
                )
            negatives[bad] = self._draw(relation[bad], head_rows[bad], generator)
            # a row's validity depends on its own entries only: recheck the redrawn rows
            rows = bad.any(1).nonzero().squeeze(1)
            bad = torch.zeros_like(bad)
            bad[rows] = self._invalid(
                positives[rows], corrupt_head[rows], negatives[rows], distinct[rows], filtered[rows]
            )
        return corrupt_head, negatives

    def _admissible(self, positives, corrupt_head) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows that can have N distinct admissible negatives, and rows that have any (with
        replacement no row needs distinct negatives)."""
        h, r, t = positives.unbind(-1)
        pool = self._pool_sizes(r, corrupt_head)
        if self.known is None:
            return (pool >= 2 * self.num) & (not self.replacement), pool > 0
        answers = torch.where(
            corrupt_head, self.known.counts("head", t, r), self.known.counts("tail", h, r)
        )
        left = pool - answers
        return (left >= 2 * self.num) & (not self.replacement), left > 0

    def _invalid(
        self,
        positives: torch.Tensor,
        corrupt_head: torch.Tensor,
        negatives: torch.Tensor,
        distinct: torch.Tensor,
        filtered: torch.Tensor,
    ) -> torch.Tensor:
        if self.replacement or self.num == 1:
            bad = torch.zeros_like(negatives, dtype=torch.bool)
        else:
            # repeats: after a stable sort, an entry equal to its left neighbour is a repeat
            ordered, order = torch.sort(negatives, dim=1, stable=True)
            repeat_sorted = torch.zeros_like(negatives, dtype=torch.bool)
            repeat_sorted[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
            bad = torch.zeros_like(repeat_sorted).scatter_(1, order, repeat_sorted)
            bad &= distinct.unsqueeze(1)
        if self.known is not None:
            h, r, t = (c.unsqueeze(1) for c in positives.unbind(-1))
            head = torch.where(corrupt_head.unsqueeze(1), negatives, h)
            tail = torch.where(corrupt_head.unsqueeze(1), t, negatives)
            bad |= self.known.contains(head, r, tail) & filtered.unsqueeze(1)
        return bad
