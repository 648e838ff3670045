"""The model factory: backbones built from the keys they declare, and the margin check (a
warning when model.gamma dwarfs the initial distances)."""

from __future__ import annotations

import logging

import fused_toy
import pytest
import torch

from vlkge.config import load_config
from vlkge.data.graph import KnowledgeGraph
from vlkge.data.triples import LabeledTriples
from vlkge.models import build_model
from vlkge.models.backbones import BACKBONES
from vlkge.models.factory import build_interaction, warn_large_margin
from vlkge.models.representations import Embedding

ROWS = [("a", "r", "b"), ("b", "r", "c"), ("c", "s", "a"), ("d", "s", "b")]


def graph() -> KnowledgeGraph:
    return KnowledgeGraph.from_labeled("toy", {"train": LabeledTriples("t", ROWS, [1, 2, 3, 4])})


def model(*overrides):
    kg = graph()
    return build_model(load_config(overrides=list(overrides))["model"], kg), kg.train


@pytest.mark.parametrize(
    "overrides, loss, warns",
    [
        (["model.backbone=transe", "model.dim=4"], "logistic", True),  # |h + r - t|_1 <= 6
        (["model.backbone=rotate", "model.dim=4"], "self_adversarial", True),
        (["model.backbone=transe", "model.dim=4"], "ce", False),  # a softmax ignores gamma
        (["model.backbone=transe", "model.dim=4", "model.gamma=2"], "logistic", False),
        (["model.backbone=transe", "model.dim=4", "model.gamma=0"], "logistic", False),
        (["model.backbone=transe", "model.dim=768"], "logistic", False),  # the paper's
        (["model.backbone=distmult", "model.dim=4"], "logistic", False),  # no margin
    ],
)
def test_a_margin_far_above_the_initial_distances_warns(overrides, loss, warns, caplog):
    built, triples = model(*overrides)
    with caplog.at_level(logging.WARNING, logger="vlkge"):
        assert warn_large_margin(built, triples, loss) is warns
    assert ("model.gamma" in caplog.text) is warns and len(caplog.records) == int(warns)


def test_the_check_draws_nothing_and_keeps_the_mode():
    built, triples = model("model.backbone=rotate", "model.dim=4")
    built.train()
    state = torch.get_rng_state()
    warn_large_margin(built, triples, "logistic")
    assert torch.equal(torch.get_rng_state(), state) and built.training


def test_a_backbone_receives_the_model_keys_it_declares():
    cfg = load_config(overrides=["model.gamma=3.5", "model.rotate_distance=l2"])["model"]
    for name, cls in BACKBONES.items():
        built = build_interaction({**cfg, "backbone": name})
        assert type(built) is cls
        for argument, key in cls.config_keys.items():
            assert getattr(built, argument) == cfg[key]
    assert BACKBONES["rotate"].config_keys == {"gamma": "gamma", "distance": "rotate_distance"}


@pytest.mark.parametrize("backbone", ["distmult", "complex"])
def test_sharded_models_hold_the_one_process_rows(backbone):
    """``shard = (rank, world)``: each rank's entity rows are its slice of one process's table,
    bit for bit, and the relations (drawn after the entities) are the same on every rank."""
    cfg = load_config(overrides=[f"model.backbone={backbone}", "model.dim=3"])["model"]
    torch.manual_seed(7)
    whole = build_model(cfg, graph())
    ranks = []
    for rank in range(3):
        torch.manual_seed(7)
        ranks.append(build_model(cfg, graph(), shard=(rank, 3)))
    rows = torch.cat([m.entities.weight for m in ranks])
    assert torch.equal(rows, whole.entities.weight.detach())
    assert [m.entity_shard for m in ranks] == [(0, 1), (1, 2), (2, 4)]
    for sharded in ranks:
        assert torch.equal(sharded.relations.weight, whole.relations.weight)
        assert not any(n.startswith("entities") for n, _ in sharded.named_parameters())


@pytest.mark.parametrize("backbone", ["distmult", "complex"])
def test_sharded_multimodal_models_draw_only_the_rank_rows(backbone, monkeypatch):
    """A VL model's per-entity tables (structural parts; ComplEx's free imaginary rows) are
    drawn per rank, never whole: each rank's rows are one process's, bit for bit, and every
    parameter drawn after them and the generator's final state are one process's too."""
    built_whole = []  # every whole table built: (rows, width)
    init = Embedding.__init__

    def recording(self, count, width, **kwargs):
        built_whole.append((count, width))
        init(self, count, width, **kwargs)

    monkeypatch.setattr(Embedding, "__init__", recording)
    kg = fused_toy.toy_graph()
    features = fused_toy.feats_for_model(kg)
    cfg = fused_toy.model_cfg(backbone)
    torch.manual_seed(7)
    whole = build_model(cfg, kg, features)
    after = torch.get_rng_state()
    ranks = []
    relations = (whole.relations.count, whole.relations.width)
    for rank in range(3):
        torch.manual_seed(7)
        built_whole.clear()
        ranks.append(build_model(cfg, kg, features, shard=(rank, 3)))
        assert built_whole == [relations]  # no entity table, not even for a moment
        assert torch.equal(torch.get_rng_state(), after)
    tables = {"real.structural" if backbone == "complex" else "structural": 4}
    if backbone == "complex":
        tables["imaginary.free"] = 6  # a..d have a structural part, f and g a text
    for name, count in tables.items():
        rows = [m.entities.get_submodule(name).weight for m in ranks]
        assert sum(len(r) for r in rows) == count
        assert torch.equal(torch.cat(rows), whole.entities.get_submodule(name).weight.detach())
    state = whole.state_dict()
    for sharded in ranks:  # projections, gates, relations: drawn after the tables, replicated
        for key, value in sharded.state_dict().items():
            if not any(key.startswith(f"entities.{name}.") for name in tables):
                assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("backbone", ["distmult", "complex"])
def test_model_dropout_reaches_every_learned_entity_row(backbone):
    """``model.dropout`` drops a structural-only model's rows and a VL ComplEx's free imaginary
    rows in training (so both arms of a grid can be tuned over it), and nothing in evaluation."""
    p = 0.5
    built, _ = model(f"model.backbone={backbone}", "model.dim=64", f"model.dropout={p}")
    kg = fused_toy.toy_graph()
    cfg = {**fused_toy.model_cfg(backbone), "dropout": p}
    fused = build_model(cfg, kg, fused_toy.feats_for_model(kg))
    tables = [(built.entities, built.entities.weight)]
    if backbone == "complex":
        free = fused.entities.imaginary.free
        tables.append((free, free.weight))
    for table, weight in tables:
        table.train()
        torch.manual_seed(0)
        rows = table()
        kept = rows != 0
        assert 0 < kept.float().mean() < 1  # about half the values zeroed
        assert torch.allclose(rows[kept], weight[kept] / (1 - p))
        table.eval()
        assert torch.equal(table(), weight)
