"""A brand-new entity against the evaluation (docs/method.md, "The run's final scorer"): on a
finished inductive run, every test query whose known entity was held out of training is ranked
twice by the run's final scorer as its metrics.json records it, once by the held-out entity's id
(as the evaluation ranks it) and once as a brand-new entity re-encoded from its manifest texts,
image and name (``vlkge predict --new-text --new-image --new-name``). Both rankings use the
evaluation's filter and realistic ties, and leave out the held-out entity itself as a candidate
(the lexical baseline scores an entity and itself 0, a new entity and its namesake not). Prints
and writes both MRRs (and the model's alone for the new entities: how ``predict`` ranked them
before it ranked with the stages), the largest score difference of the model alone, with each
stage alone and with all of them, and the time per query.

    python bench/new_entity_parity.py runs/ind/best-inductive \
        --out bench/results/new-entity-parity-wn9-img.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vlkge.data.index import TripleIndex
from vlkge.evaluation.evaluator import model_scorer
from vlkge.predict import RunEncoders, new_anchor
from vlkge.runfolder import read_metrics
from vlkge.training.final import recorded_scorer
from vlkge.training.setup import load_run


def realistic_rank(scores: torch.Tensor, answer: int, drop: torch.Tensor) -> float:
    """The answer's rank among the candidates not in ``drop``, ties at their mean rank."""
    keep = torch.ones_like(scores, dtype=torch.bool)
    keep[drop] = False
    keep[answer] = True
    rest, target = scores[keep].double(), scores[answer].double()
    return 1 + float((rest > target).sum()) + (float((rest == target).sum()) - 1) / 2


@torch.no_grad()
def largest_difference(score_fn, kg, anchors: dict) -> float:
    """The largest difference over every relation and side between ``score_fn``'s scores of
    each held-out entity by id and as a new entity, the entity itself left out."""
    largest = 0.0
    for anchor, new in anchors.items():
        others = torch.arange(kg.num_entities) != anchor
        for side in ("head", "tail"):
            relations = torch.arange(kg.num_relations)
            by_id = score_fn(side, torch.full_like(relations, anchor), relations)
            as_new = score_fn(side, torch.zeros_like(relations), relations, new=new)
            largest = max(largest, float((as_new - by_id)[:, others].abs().max()))
    return largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a finished inductive run folder")
    parser.add_argument("--out", help="JSON file for the figures")
    args = parser.parse_args()
    cfg, kg, model = load_run(args.run)
    encoders = RunEncoders()  # the run's encoders, built once (as vlkge serve keeps them)
    score_fn, stages = recorded_scorer(args.run, cfg, kg, model, encoders=encoders)
    index = TripleIndex(kg.all_triples(), kg.num_entities, kg.num_relations)
    seen = kg.seen_in_train()
    texts = kg.manifest.texts if kg.manifest is not None else {}
    images = kg.manifest.images if kg.manifest is not None else {}
    modalities = cfg["model"]["modalities"]
    anchors: dict[int, object] = {}

    encoding = 0.0
    ranks = {"id": [], "new": [], "model": []}
    alone = model_scorer(model, cfg["precision"])  # what a new entity was ranked by before
    scoring, without_inputs = 0.0, 0
    for h, r, t in kg.splits["test"].tolist():
        for side, anchor, answer in (("tail", h, t), ("head", t, h)):
            if seen[anchor]:
                continue
            label = kg.entities[anchor]
            text = " ".join(texts.get(label) or ()) if "text" in modalities else ""
            image = (images.get(label) or [None])[0] if "image" in modalities else None
            if not text and image is None:  # nothing a new entity could be given by
                without_inputs += 1
                continue
            if anchor not in anchors:
                start = time.perf_counter()
                name = kg.names.get(label)
                anchors[anchor] = new_anchor(
                    cfg, kg, text or None, image, name, model=model, build=encoders
                )
                encoding += time.perf_counter() - start
            relation = torch.tensor([r])
            known = index.known(side, torch.tensor([anchor]), relation)[1]
            drop = torch.cat([known, torch.tensor([anchor])])
            with torch.no_grad():
                by_id = score_fn(side, torch.tensor([anchor]), relation)[0].float()
                start = time.perf_counter()
                as_new = score_fn(side, torch.tensor([0]), relation, new=anchors[anchor])[0]
                scoring += time.perf_counter() - start
                by_model = alone(side, torch.tensor([0]), relation, new=anchors[anchor])[0]
            ranks["id"].append(realistic_rank(by_id, answer, drop))
            ranks["new"].append(realistic_rank(as_new.float(), answer, drop))
            ranks["model"].append(realistic_rank(by_model.float(), answer, drop))
    left_out = {k: v for new in anchors.values() for k, v in new.left_out.items()}
    differences = {}  # the largest difference of the model, alone and with each stage
    recorded = read_metrics(Path(args.run))
    for stage in (None, *stages):
        kept = {k: v for k, v in recorded.items() if k not in stages or k == stage}
        partial, _ = recorded_scorer(args.run, cfg, kg, model, kept, encoders=encoders)
        name = "model" if stage is None else f"model + {stage}"
        differences[name] = largest_difference(partial, kg, anchors)
    differences["all"] = largest_difference(score_fn, kg, anchors)
    queries = len(ranks["id"])
    out = {
        "run": str(args.run),
        "stages": stages,
        "left_out": left_out,
        "queries": queries,
        "held_out_entities": len(anchors),
        "queries_of_entities_without_inputs": without_inputs,
        "mrr_by_id": sum(1 / x for x in ranks["id"]) / queries,
        "mrr_as_new_entity": sum(1 / x for x in ranks["new"]) / queries,
        "mrr_as_new_entity_model_alone": sum(1 / x for x in ranks["model"]) / queries,
        "same_rank": sum(a == b for a, b in zip(ranks["id"], ranks["new"], strict=True)),
        "largest_score_difference": differences,
        "encoding_ms_per_entity": 1000 * encoding / max(1, len(anchors)),
        "scoring_ms_per_query": 1000 * scoring / max(1, queries),
    }
    print(json.dumps(out, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
