"""Evaluation with sharded entity tables: two gloo ranks, each scoring and counting only its
own entities (in candidate blocks), give exactly the ranks of one process on FB15k-237, with
the realistic and ordinal tie rules and the per-direction filter. The model's vectors take
values in {-1, 0, 1} so that many candidates tie."""

from __future__ import annotations

from pathlib import Path

import launch
import pytest
import torch
from sharded_ranker import TIES, TRIPLES, tied_model

from vlkge.evaluation.evaluator import model_scorer
from vlkge.evaluation.ranking import rank_triples


def test_sharded_ranks_equal_one_process_on_fb15k_237(tmp_path):
    pytest.importorskip("torch.distributed.run")
    kg, model, evaluator = tied_model()
    out = tmp_path / "ranks.pt"
    script = Path(__file__).with_name("sharded_ranker.py")
    launch.torchrun(str(script), str(out))
    sharded = torch.load(out)
    with torch.no_grad():
        scorer = model_scorer(model)
        for ties in TIES:
            whole = rank_triples(
                scorer, kg.splits["test"][:TRIPLES], kg.num_entities, evaluator.index, ties=ties
            )
            for side in ("head", "tail"):
                assert torch.equal(sharded[ties][side], whole[side])
            split = whole["tail"] != whole["tail"].round()  # realistic: a tie's half ranks
            assert split.any() if ties == "realistic" else not split.any()
