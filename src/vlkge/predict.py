"""Ranked predictions for one query: the top-k entities for (h, r, ?) or (?, r, t)."""

from __future__ import annotations

import torch

from vlkge.data.graph import KnowledgeGraph
from vlkge.data.index import TripleIndex
from vlkge.models.model import KGEModel


@torch.no_grad()
def top_k(
    model: KGEModel,
    kg: KnowledgeGraph,
    side: str,
    anchor: str,
    relation: str,
    k: int = 10,
    exclude_known: bool = False,
) -> list[dict]:
    """Top-``k`` answers for a query given by labels; ``side`` is the side predicted.

    Each answer says whether the triple is already known (in any split), so a user can tell
    memorised facts from new predictions; ``exclude_known`` drops them instead.
    """
    anchor_id = torch.tensor([kg.entity_id(anchor)])
    relation_id = torch.tensor([kg.relation_id(relation)])
    model.eval()
    scores = model.score_against(side, anchor_id, relation_id, table=model.entity_table())[0]
    index = TripleIndex(kg.all_triples(), kg.num_entities, kg.num_relations)
    _, known_ids = index.known(side, anchor_id, relation_id)
    known = torch.zeros(kg.num_entities, dtype=torch.bool)
    known[known_ids] = True
    candidates = torch.arange(kg.num_entities)
    if exclude_known:
        candidates = candidates[~known]
    best = torch.topk(scores[candidates], min(k, len(candidates)))
    return [
        {
            "rank": rank,
            "entity": kg.entities[int(e)],
            "name": kg.display_name(int(e)),
            "score": float(s),
            "known": bool(known[e]),
        }
        for rank, (s, e) in enumerate(
            zip(best.values, candidates[best.indices], strict=True), start=1
        )
    ]
