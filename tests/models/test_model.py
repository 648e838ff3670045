"""KGEModel composition: representations + backbone, reciprocal relations, entity tables."""

import torch

from vlkge.config import load_config
from vlkge.data.graph import KnowledgeGraph
from vlkge.data.triples import LabeledTriples
from vlkge.models import build_model


def toy_graph() -> KnowledgeGraph:
    rows = [("a", "r", "b"), ("b", "r", "c"), ("c", "s", "a"), ("d", "s", "b")]
    return KnowledgeGraph.from_labeled("toy", {"train": LabeledTriples("t", rows, [1, 2, 3, 4])})


def model_for(backbone, reciprocal=False):
    cfg = load_config(
        overrides=[
            f"model.backbone={backbone}",
            "model.dim=5",
            f"model.reciprocal={str(reciprocal).lower()}",
        ]
    )
    return build_model(cfg["model"], toy_graph())


def test_score_against_matches_score_triples():
    for backbone in ("transe", "distmult", "complex", "rotate"):
        model = model_for(backbone)
        anchor, relation = torch.tensor([0, 2]), torch.tensor([0, 1])
        tails = model.score_against("tail", anchor, relation)
        heads = model.score_against("head", anchor, relation)
        for i in range(2):
            for e in range(4):
                trip = torch.tensor([[anchor[i], relation[i], e]])
                assert torch.allclose(tails[i, e], model.score_triples(trip)[0], atol=1e-5)
                trip = torch.tensor([[e, relation[i], anchor[i]]])
                assert torch.allclose(heads[i, e], model.score_triples(trip)[0], atol=1e-5)


def test_candidates_pick_from_full_scores():
    model = model_for("complex")
    anchor, relation = torch.tensor([1, 3]), torch.tensor([1, 0])
    ids = torch.tensor([[0, 2], [3, 1]])
    for side in ("head", "tail"):
        full = model.score_against(side, anchor, relation)
        assert torch.allclose(model.score_against(side, anchor, relation, ids), full.gather(1, ids))


def test_reciprocal_model_uses_inverse_relations_for_heads():
    model = model_for("distmult", reciprocal=True)
    assert model.relations.count == 4
    anchor, relation = torch.tensor([1]), torch.tensor([0])
    heads = model.score_against("head", anchor, relation)
    # (?, r, t) is scored as (t, r_inverse, ?)
    expected = model.score_against("tail", anchor, relation + 2)
    assert torch.allclose(heads, expected)
    table = model.entity_table()
    assert torch.allclose(model.score_against("head", anchor, relation, table=table), heads)


def test_relation_tables_are_backbone_shaped():
    assert model_for("rotate").relations.width == 5  # phases
    assert model_for("complex").relations.width == 10  # real and imaginary parts
    assert model_for("complex").entities.width == 10
    phases = model_for("rotate").relations.weight
    assert phases.min() >= 0 and phases.max() <= 2 * torch.pi


def test_score_vectors_serves_queries_given_by_vectors():
    for backbone in ("distmult", "rotate"):
        for reciprocal in (False, True):
            model = model_for(backbone, reciprocal)
            anchor, relation = torch.tensor([1, 3]), torch.tensor([1, 0])
            table = model.entity_table()
            for side in ("head", "tail"):
                by_vector = model.score_vectors(side, table[anchor], relation, table)
                assert torch.equal(by_vector, model.score_against(side, anchor, relation))
