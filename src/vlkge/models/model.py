"""A KGE model: entity representation + relation representation + interaction (backbone)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vlkge.models.backbones import Interaction
from vlkge.models.representations import Representation
from vlkge.terms import check_side


class KGEModel(nn.Module):
    """Scores triples; with ``reciprocal`` head queries become tail queries of inverse relations.

    With reciprocal relations the relation table has ``2 * num_relations`` rows and
    ``(?, r, t)`` is scored as ``(t, r + num_relations, ?)``.
    """

    def __init__(
        self,
        entities: Representation,
        relations: Representation,
        interaction: Interaction,
        num_relations: int,
        reciprocal: bool = False,
    ):
        super().__init__()
        self.entities = entities
        self.relations = relations
        self.interaction = interaction
        self.num_relations = num_relations
        self.reciprocal = reciprocal

    def score_triples(
        self, triples: torch.Tensor, table: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Scores of ``[B, 3]`` id triples (h, r, t) -> ``[B]``; rows are gathered from
        ``table`` (a full entity table already computed for this batch) when given."""
        h, r, t = triples.unbind(-1)
        if table is None:
            heads, tails = self.entities(h), self.entities(t)
        else:
            heads, tails = F.embedding(h, table), F.embedding(t, table)
        return self.interaction.score(heads, self.relations(r), tails)

    def score_against(
        self,
        side: str,
        anchor: torch.Tensor,
        relation: torch.Tensor,
        candidates: torch.Tensor | None = None,
        table: torch.Tensor | None = None,
        span: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Score queries against candidate entities.

        ``side="tail"``: queries ``(anchor, relation, ?)``; ``side="head"``: ``(?, relation,
        anchor)``. ``candidates`` is ``None`` (all entities, ``[B, E]``) or ids ``[B, N]``
        (per-row candidates, ``[B, N]``). ``table`` is an optional precomputed full entity
        table, reused across calls during evaluation. ``span=(start, end)`` with ``candidates``
        ``None`` scores only the entities ``start <= id < end`` (``[B, end - start]``), so
        evaluation can bound the candidate side of its memory.
        """
        check_side(side)
        table = self.entities() if table is None else table
        anchors = F.embedding(anchor, table)  # its backward is far cheaper than indexing's
        pool = table if span is None else table[span[0] : span[1]]
        return self.score_vectors(side, anchors, relation, pool, candidates)

    def score_vectors(
        self,
        side: str,
        anchors: torch.Tensor,
        relation: torch.Tensor,
        pool: torch.Tensor,
        candidates: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Score queries whose known entities are given as vectors ``anchors`` ``[B, width]``
        (entities of the graph or new ones, :meth:`Representation.represent`) against the
        entity vectors ``pool`` ``[P, width]``: ``[B, P]``, or ``[B, N]`` for per-row
        ``candidates`` ids into ``pool``. With reciprocal relations a head query
        ``(?, r, t)`` is scored as the tail query ``(t, r + num_relations, ?)``."""
        check_side(side)
        if side == "head" and self.reciprocal:
            side, relation = "tail", relation + self.num_relations
        rel = self.relations(relation)
        if side == "tail":
            return self.interaction.score_tails(anchors, rel, pool, candidates)
        return self.interaction.score_heads(pool, rel, anchors, candidates)

    def score_sides(
        self,
        tail: torch.Tensor,
        anchors: torch.Tensor,
        relation: torch.Tensor,
        pool: torch.Tensor,
        candidates: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """:meth:`score_vectors` for a batch that mixes both sides in one call: ``(anchor,
        relation, ?)`` where ``tail`` (``[B]`` bool) holds, ``(?, relation, anchor)``
        elsewhere (a head query of a reciprocal model being the tail query of the inverse
        relation)."""
        if self.reciprocal:
            relation = torch.where(tail, relation, relation + self.num_relations)
            tail = torch.ones_like(tail)
        rel = self.relations(relation)
        return self.interaction.score_sides(anchors, rel, pool, candidates, tail)

    def score_corruptions(
        self,
        triples: torch.Tensor,
        corrupt_head: torch.Tensor,
        candidates: torch.Tensor,
        table: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Negative sampling's scores: the ``[B, 3]`` positives ``[B]`` and their corruptions
        ``[B, N]`` (the head replaced by each of ``candidates`` where ``corrupt_head``, else the
        tail), from one gather of the positives' ends that the corruptions' anchors share (one
        gradient of the table where there would be four)."""
        h, r, t = triples.unbind(-1)
        ends = F.embedding(torch.cat([h, t]), table)
        heads, tails = ends[: len(triples)], ends[len(triples) :]
        pos = self.interaction.score(heads, self.relations(r), tails)
        anchors = torch.where(corrupt_head.unsqueeze(1), tails, heads)
        return pos, self.score_sides(~corrupt_head, anchors, r, table, candidates)

    @torch.no_grad()
    def entity_table(self) -> torch.Tensor:
        """Every entity's vector, computed once (for evaluation and prediction)."""
        return self.entities()
