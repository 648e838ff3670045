"""Negative sampling: N distinct corruptions per positive, rejecting known true triples.

Vectorised rejection: draw every candidate at once, mark those that are known positives or
repeat an earlier candidate of the same row, redraw only those, until none is left.
"""

from __future__ import annotations

import torch

from vlkge.data.index import TripleIndex
from vlkge.errors import ConfigError

MAX_ROUNDS = 200


class NegativeSampler:
    """Uniform corruption of heads or tails (a fair coin per positive when ``side="both"``)."""

    def __init__(
        self,
        num_entities: int,
        num: int,
        side: str = "both",
        known: TripleIndex | None = None,
    ):
        if num >= num_entities:
            raise ConfigError(
                f"training.negatives.num ({num}) must be smaller than the number of "
                f"candidate entities ({num_entities})"
            )
        self.num_entities, self.num, self.side, self.known = num_entities, num, side, known

    def sample(
        self, positives: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For ``[B, 3]`` positives return ``(corrupt_head [B] bool, negatives [B, N] ids)``."""
        size = len(positives)
        if self.side == "both":
            corrupt_head = torch.rand(size, generator=generator) < 0.5
        else:
            corrupt_head = torch.full((size,), self.side == "head")
        negatives = torch.randint(self.num_entities, (size, self.num), generator=generator)
        bad = self._invalid(positives, corrupt_head, negatives)
        rounds = 0
        while bad.any():
            rounds += 1
            if rounds > MAX_ROUNDS:
                raise ConfigError(
                    "could not draw enough distinct negatives that are not known triples; "
                    "lower training.negatives.num"
                )
            negatives[bad] = torch.randint(
                self.num_entities, (int(bad.sum()),), generator=generator
            )
            bad = self._invalid(positives, corrupt_head, negatives)
        return corrupt_head, negatives

    def _invalid(
        self, positives: torch.Tensor, corrupt_head: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        # repeats: after a stable sort, an entry equal to its left neighbour is a repeat
        ordered, order = torch.sort(negatives, dim=1, stable=True)
        repeat_sorted = torch.zeros_like(negatives, dtype=torch.bool)
        repeat_sorted[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
        bad = torch.zeros_like(repeat_sorted).scatter_(1, order, repeat_sorted)
        if self.known is not None:
            h, r, t = (c.unsqueeze(1) for c in positives.unbind(-1))
            head = torch.where(corrupt_head.unsqueeze(1), negatives, h)
            tail = torch.where(corrupt_head.unsqueeze(1), t, negatives)
            bad |= self.known.contains(head, r, tail)
        return bad
