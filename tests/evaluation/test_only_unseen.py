"""evaluation.only_unseen: inductive metrics over exactly the triples touching an unseen entity."""

from __future__ import annotations

import logging

import torch

from vlkge.config import load_config
from vlkge.data.graph import KnowledgeGraph
from vlkge.data.triples import LabeledTriples
from vlkge.evaluation.evaluator import Evaluator

TRAIN = [("a", "r", "b"), ("b", "s", "c"), ("c", "r", "a")]
# x and y never occur in training
TEST = [("a", "r", "c"), ("x", "r", "a"), ("b", "s", "y"), ("x", "s", "y"), ("c", "s", "b")]


def graph() -> KnowledgeGraph:
    splits = {
        "train": LabeledTriples("train", TRAIN, [1, 2, 3]),
        "valid": LabeledTriples("valid", TRAIN[:1], [1]),
        "test": LabeledTriples("test", TEST, list(range(1, 6))),
    }
    return KnowledgeGraph.from_labeled("toy", splits, inductive=True)


def scores_by_id(side, anchor, relation):
    """Every candidate scores its own id: a fixed, known ranking."""
    return torch.arange(5, dtype=torch.float).expand(len(anchor), 5)


def test_default_is_every_triple():
    cfg = load_config()
    assert cfg["evaluation"]["only_unseen"] is False
    kg = graph()
    metrics = Evaluator(kg, cfg["evaluation"]).evaluate_scores(scores_by_id, "test")
    assert metrics["both"]["count"] == 2 * len(TEST)


def test_only_triples_with_an_unseen_entity_are_scored():
    kg = graph()
    cfg = load_config(overrides=["evaluation.only_unseen=true"])["evaluation"]
    evaluator = Evaluator(kg, cfg)
    kept = [tuple(kg.entities[h] for h in (row[0], row[2])) for row in evaluator.triples("test")]
    assert kept == [("x", "a"), ("b", "y"), ("x", "y")]
    metrics = evaluator.evaluate_scores(scores_by_id, "test")
    assert metrics["both"]["count"] == 6 and metrics["head"]["count"] == 3
    # the same numbers as evaluating a graph whose test split holds only those triples
    full = Evaluator(kg, load_config()["evaluation"])
    ranks = full.rank(scores_by_id, "test")
    unseen = torch.tensor([False, True, True, True, False])
    expected = torch.cat([ranks["head"][unseen], ranks["tail"][unseen]])
    assert metrics["both"]["mrr"] == float((1 / expected).mean())


def test_transductive_split_gives_empty_metrics_with_a_warning(caplog):
    kg = graph()
    cfg = load_config(overrides=["evaluation.only_unseen=true"])["evaluation"]
    with caplog.at_level(logging.WARNING):
        metrics = Evaluator(kg, cfg).evaluate_scores(scores_by_id, "valid")
    assert metrics["both"]["count"] == 0
    assert "no valid triple touches an entity unseen" in caplog.text


def test_evaluate_cli_flag(tmp_path, make_dataset, capsys):
    import json

    from vlkge.cli import main
    from vlkge.training.run import train

    folder = make_dataset(tmp_path / "toy", train=TRAIN, valid=TRAIN[:1], test=TEST)
    cfg = load_config(
        overrides=[
            f"dataset.name={folder}",
            "dataset.setting=inductive",
            "model.dim=4",
            "training.epochs=1",
            "training.negatives.num=2",
            "training.progress=false",
        ]
    )
    train(cfg, tmp_path / "run")
    assert main(["evaluate", str(tmp_path / "run"), "--only-unseen", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["both"]["count"] == 6
    assert main(["evaluate", str(tmp_path / "run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test"]["both"]["count"] == 10


def test_metrics_by_role_of_the_unseen_entity():
    kg = graph()
    evaluator = Evaluator(kg, load_config(overrides=["evaluation.only_unseen=true"])["evaluation"])
    metrics = evaluator.evaluate_scores(scores_by_id, "test")
    ranks = evaluator.rank(scores_by_id, "test")
    # kept: (x, r, a), (b, s, y), (x, s, y); head queries rank the head, tail queries the tail
    head, tail = ranks["head"], ranks["tail"]
    anchor = torch.cat([tail[[0, 2]], head[[1, 2]]])  # x or y is the query's known side
    answer = torch.cat([head[[0, 2]], tail[[1, 2]]])  # x or y is the ranked answer
    roles = metrics["by_role"]
    assert roles["unseen_anchor"]["count"] == 4 and roles["unseen_answer"]["count"] == 4
    assert roles["unseen_anchor"]["mrr"] == float((1 / anchor).mean())
    assert roles["unseen_answer"]["mrr"] == float((1 / answer).mean())
    full = Evaluator(kg, load_config()["evaluation"]).evaluate_scores(scores_by_id, "test")
    assert "by_role" not in full
