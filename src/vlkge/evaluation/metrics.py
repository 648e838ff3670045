"""Rank-based metrics, per side and per relation, in the ``metrics.json`` layout.

Layout (other tools read it)::

    {"both": {"mrr", "mr", "hits@1", "hits@3", "hits@10", "count"},
     "head": {...}, "tail": {...}, "per_relation": {"<relation>": {...}},
     "by_role": {"unseen_anchor": {...}, "unseen_answer": {...}}}   # only_unseen runs
"""

from __future__ import annotations

import torch

HITS_AT = (1, 3, 10)


def summarize(ranks: torch.Tensor) -> dict[str, float]:
    """MRR, MR and Hits@k of a vector of (possibly fractional) ranks, micro-averaged."""
    ranks = ranks.double()
    if ranks.numel() == 0:
        return {
            "mrr": float("nan"),
            "mr": float("nan"),
            **{f"hits@{k}": float("nan") for k in HITS_AT},
            "count": 0,
        }
    out = {"mrr": float((1.0 / ranks).mean()), "mr": float(ranks.mean())}
    for k in HITS_AT:
        out[f"hits@{k}"] = float((ranks <= k).double().mean())
    out["count"] = int(ranks.numel())
    return out


def report(
    ranks: dict[str, torch.Tensor], relations: torch.Tensor, relation_names: list[str]
) -> dict:
    """Metrics for both sides together, each side, and each relation (both sides pooled)."""
    sides = list(ranks)
    both = torch.cat([ranks[s] for s in sides])
    both_relations = relations.repeat(len(sides))
    out: dict = {"both": summarize(both)}
    for side in sides:
        out[side] = summarize(ranks[side])
    out["per_relation"] = {
        relation_names[int(rel)]: summarize(both[both_relations == rel])
        for rel in torch.unique(relations)
    }
    return out


def role_report(ranks: dict[str, torch.Tensor], triples: torch.Tensor, seen: torch.Tensor) -> dict:
    """Inductive metrics by the unseen entity's role in each query (both sides pooled):
    ``unseen_anchor`` ranks known entities for a new one (the WikiArt case: an unseen artwork's
    artist), ``unseen_answer`` ranks a new entity among all candidates. A triple between two
    unseen entities counts in both."""
    anchor_unseen, answer_unseen = [], []
    heads, tails = triples[:, 0], triples[:, 2]
    for side in ranks:
        anchor, answer = (tails, heads) if side == "head" else (heads, tails)
        anchor_unseen.append(~seen[anchor])
        answer_unseen.append(~seen[answer])
    both = torch.cat(list(ranks.values()))
    return {
        "unseen_anchor": summarize(both[torch.cat(anchor_unseen)]),
        "unseen_answer": summarize(both[torch.cat(answer_unseen)]),
    }
