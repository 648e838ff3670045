"""Dataset statistics: sizes, per-relation counts, unseen entities and inverse leakage.

Inverse leakage is what makes WN9-IMG easy: a test triple (h, r, t) whose reversed pair
(t, ., h) is already in training under some relation (e.g. hypernym/hyponym) can be answered by
memorising that pair. Reported per split as the share of triples whose reversed pair occurs in
train, and the share whose own (h, t) pair occurs in train under another relation.
"""

from __future__ import annotations

import torch

from vlkge.data.graph import KnowledgeGraph
from vlkge.terms import SPLITS


def _pair_codes(triples: torch.Tensor, num_entities: int, reverse: bool = False) -> torch.Tensor:
    h, t = triples[:, 0], triples[:, 2]
    return (t * num_entities + h) if reverse else (h * num_entities + t)


def statistics(kg: KnowledgeGraph) -> dict:
    """Everything ``vlkge datasets info`` prints, as plain Python values."""
    seen = kg.seen_in_train()
    train_pairs = torch.unique(_pair_codes(kg.train, kg.num_entities))
    out: dict = {
        "name": kg.name,
        "entities": kg.num_entities,
        "entities_in_train": int(seen.sum()),
        "relations": kg.num_relations,
        "triples": {s: len(kg.splits[s]) for s in SPLITS if s in kg.splits},
        "per_relation": {},
        "unseen_entities": {},
        "inverse_leakage": {},
        "pair_leakage": {},
    }
    counts = {
        s: torch.bincount(kg.splits[s][:, 1], minlength=kg.num_relations).tolist()
        for s in SPLITS
        if s in kg.splits
    }
    for rel_id, name in enumerate(kg.relations):
        out["per_relation"][name] = {s: c[rel_id] for s, c in counts.items()}
    for split in ("valid", "test"):
        if split not in kg.splits:
            continue
        triples = kg.splits[split]
        entities = torch.unique(torch.cat([triples[:, 0], triples[:, 2]]))
        unseen = ~seen[entities]
        with_unseen = ~(seen[triples[:, 0]] & seen[triples[:, 2]])
        out["unseen_entities"][split] = {
            "entities": int(unseen.sum()),
            "triples": int(with_unseen.sum()),
        }
        reverse = torch.isin(_pair_codes(triples, kg.num_entities, reverse=True), train_pairs)
        same = torch.isin(_pair_codes(triples, kg.num_entities), train_pairs)
        out["inverse_leakage"][split] = float(reverse.double().mean())
        out["pair_leakage"][split] = float(same.double().mean())
    if kg.manifest is not None:
        out["modalities"] = kg.manifest.coverage(kg.entities)
    return out


def format_statistics(stats: dict) -> str:
    """A plain-text report of ``statistics`` for the terminal."""
    lines = [
        f"dataset    {stats['name']}",
        f"entities   {stats['entities']:,} ({stats['entities_in_train']:,} in train)",
        f"relations  {stats['relations']:,}",
        "triples    " + " / ".join(f"{s} {n:,}" for s, n in stats["triples"].items()),
    ]
    for split, unseen in stats["unseen_entities"].items():
        lines.append(
            f"unseen     {split}: {unseen['entities']:,} entities not in train, "
            f"{unseen['triples']:,} triples touch one"
        )
    for split, share in stats["inverse_leakage"].items():
        lines.append(
            f"leakage    {split}: {share:.1%} have the reversed pair (t, ., h) in train; "
            f"{stats['pair_leakage'][split]:.1%} the same pair (h, ., t)"
        )
    if "modalities" in stats:
        cov = stats["modalities"]
        lines.append(
            f"modalities both {cov['both']:,}  text only {cov['text_only']:,}  "
            f"image only {cov['image_only']:,}  neither {cov['neither']:,}"
        )
    splits = list(stats["triples"])
    width = max(len("relation"), *(len(r) for r in stats["per_relation"]))
    lines.append("")
    lines.append(f"{'relation':<{width}}  " + "  ".join(f"{s:>8}" for s in splits))
    for rel, counts in sorted(stats["per_relation"].items(), key=lambda kv: -kv[1]["train"]):
        lines.append(f"{rel:<{width}}  " + "  ".join(f"{counts[s]:>8,}" for s in splits))
    return "\n".join(lines)
