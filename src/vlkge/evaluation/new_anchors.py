"""Entities outside the graph as the known side of queries (``vlkge predict --new-text``,
``vlkge serve``), scored by a run's whole final scorer: a ``ScoreFn`` called with
``new=NewAnchors(...)`` reads its ``anchor`` ids as rows of it, and each stage reads what it
needs of them (docs/method.md, "The run's final scorer"): the model and a partner built on
features their raw features, the zero-shot baseline its encoder's features of their inputs,
the lexical baseline their text and name; the hub penalties need nothing of the anchor.

A stage with nothing to say about a new entity (a structural partner, a zero-shot baseline
without the entity's modality) raises :class:`Unscorable`; the blend then leaves it out for
that call and notes it in ``left_out``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from vlkge.encoders.base import Encoder


class Unscorable(Exception):
    """A second scorer that cannot score these new anchors; the message says why."""


@dataclass
class NewAnchors:
    """``n`` new entities: each one's raw features (``{modality: [1, w]}``) and the decoded
    inputs they were encoded from (``{"text": str, "image": pixels}``) by ``encoder``, its text
    and name as the lexical baseline reads them (``""``: none), and how a complex backbone
    builds its imaginary part (:data:`~vlkge.models.representations.NEW_IMAGINARY`)."""

    features: list[dict[str, torch.Tensor]]
    inputs: list[dict]
    encoder: Encoder | None
    texts: list[str]
    names: list[str]
    imaginary: str = "auto"
    #: filled while scoring: the stages left out (stage -> why)
    left_out: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.features)

    def given(self, anchor: torch.Tensor, usable: list[str]) -> dict:
        """The raw features of rows ``anchor`` in the modalities ``usable`` as
        ``{modality: (table [b, w], mask [b])}`` (zero rows where an entity lacks one); an
        entity with none of them is :class:`Unscorable`."""
        rows = [self.features[i] for i in anchor.tolist()]
        if any(not set(row) & set(usable) for row in rows):
            raise Unscorable(f"its model reads only {' and '.join(usable)} features")
        out = {}
        for modality in usable:
            present = [modality in row for row in rows]
            if not any(present):
                continue
            width = next(row[modality] for row in rows if modality in row).shape[1]
            table = torch.cat(
                [row[modality].cpu() if modality in row else torch.zeros(1, width) for row in rows]
            )
            out[modality] = (table.float().cpu(), torch.tensor(present))
        return out
