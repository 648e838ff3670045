#!/usr/bin/env python
"""Probe (issue 18 ablation): late fusion of a trained inductive model with the zero-shot scorer.

For a finished inductive run (e.g. ``configs/wn9-img/best-inductive.yaml``), scores every query
with ``calibrated model score + lambda * zero-shot score`` (the zero-shot baseline of
``--zero-shot-config``: relation prompts naming each candidate, cosine with the anchor's text
feature) for a grid of lambdas, and prints validation and test MRR (default protocol,
``evaluation.only_unseen`` as the run has it). Lambda is chosen on validation by the reader;
the test column is printed for the record, not for selection.

Usage::

    python bench/zero_shot_blend_probe.py runs/ind/best-inductive \\
        --zero-shot-config configs/wn9-img/zero-shot-minilm.yaml

Results: docs/results.md, "Late fusion with the zero-shot baseline (probe)". The product of the
per-relation row: ``evaluation.zero_shot_blend`` (:mod:`vlkge.evaluation.blend`).
"""

from __future__ import annotations

import argparse
import json

import torch

from vlkge.config import load_config
from vlkge.evaluation.blend import blended
from vlkge.evaluation.evaluator import Evaluator, model_scorer
from vlkge.evaluation.zero_shot import configured_scorer
from vlkge.training.setup import load_run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run")
    p.add_argument("--zero-shot-config", default="configs/wn9-img/zero-shot-minilm.yaml")
    p.add_argument(
        "--lambdas", type=float, nargs="+", default=[0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 1000.0]
    )
    a = p.parse_args()
    torch.set_num_threads(1)
    cfg, kg, model = load_run(a.run)
    evaluator = Evaluator(kg, cfg["evaluation"])
    trained, _ = evaluator.calibrate(model_scorer(model))
    # the zero-shot baseline on the run's own dataset and protocol
    same = [f"dataset.{k}={v}" for k, v in cfg["dataset"].items() if isinstance(v, str)]
    zcfg = load_config(a.zero_shot_config, same)
    zero_shot = configured_scorer(zcfg, kg).scorer()

    def blend(lam: float):
        weights = {side: torch.full((kg.num_relations,), lam) for side in evaluator.sides}
        return blended(trained, zero_shot, weights)

    rows = {}
    for lam in a.lambdas:
        rows[lam] = {
            split: round(evaluator.evaluate_scores(blend(lam), split)["both"]["mrr"], 4)
            for split in ("valid", "test")
        }
        print(lam, rows[lam], flush=True)
    # one weight per side and relation, each the best of the grid on validation: the fit of
    # evaluation.zero_shot_blend
    evaluator.zero_shot_blend = {"weights": a.lambdas, "split": "valid"}
    fitted, summary = evaluator.blend(trained, zero_shot)
    rows["per_relation"] = {
        split: round(evaluator.evaluate_scores(fitted, split)["both"]["mrr"], 4)
        for split in ("valid", "test")
    }
    rows["per_relation_weights"] = summary["weights"]
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
