"""Run under torchrun by ``test_sharded_ranking.py`` (which imports the model from here):
ranks FB15k-237 test triples with the model's entity table sharded across the ranks; rank 0
saves the ranks to ``argv[1]``."""

from __future__ import annotations

import sys

import torch

from vlkge import distributed
from vlkge.config import load_config
from vlkge.evaluation.evaluator import Evaluator, model_scorer
from vlkge.evaluation.ranking import rank_triples
from vlkge.models.sharded import shard_model

TIES = ("realistic", "ordinal")
TRIPLES = 500  # test triples ranked on both sides


def tied_model():
    """The graph, an untrained DistMult whose vectors are rounded to {-1, 0, 1}, and the
    evaluator of the default protocol."""
    from vlkge.training.setup import prepare

    cfg = load_config(
        overrides=["dataset.name=fb15k-237", "model.backbone=distmult", "model.dim=4"]
    )
    kg, model = prepare(cfg, quiet=True)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_((param / param.std()).round().clamp(-1, 1))
    return kg, model.eval(), Evaluator(kg, cfg["evaluation"])


def main(out: str) -> None:
    with distributed.session(torch.device("cpu")):
        kg, model, evaluator = tied_model()
        shard_model(model, distributed.rank(), distributed.world_size())
        ranks = {}
        with torch.no_grad():
            scorer = model_scorer(model)
            for ties in TIES:  # candidate blocks smaller than a shard: several per rank
                ranks[ties] = rank_triples(
                    scorer,
                    kg.splits["test"][:TRIPLES],
                    kg.num_entities,
                    evaluator.index,
                    ties=ties,
                    max_scores=4000,
                )
        if distributed.is_main():
            torch.save(ranks, out)


if __name__ == "__main__":
    main(sys.argv[1])
