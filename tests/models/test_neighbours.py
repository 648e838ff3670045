"""Structural parts borrowed from modal neighbours: the search against a brute-force reference,
the borrowed parts in evaluation, training (structural dropout) and prediction of new entities."""

import pytest
import torch
import torch.nn.functional as F
from fused_toy import A, B, C, D, E, G, H, fused, parts

from vlkge.config import load_config
from vlkge.errors import ConfigError
from vlkge.models import neighbours as nb
from vlkge.models.neighbours import feature_keys, nearest


def test_nearest_matches_brute_force_in_blocks(monkeypatch):
    monkeypatch.setattr(nb, "BLOCK", 3)  # several blocks
    gen = torch.Generator().manual_seed(1)
    bank = F.normalize(torch.randn(9, 4, generator=gen), dim=1)
    queries = torch.cat([bank[:4], F.normalize(torch.randn(3, 4, generator=gen), dim=1)])
    index, weight = nearest(queries, bank, 3, 0.1)
    sim = queries @ bank.T
    for i in range(len(queries)):
        top, idx = sim[i].topk(3)
        assert index[i].tolist() == idx.tolist()
        assert torch.allclose(weight[i], torch.softmax(top / 0.1, 0))
    assert torch.allclose(weight.sum(1), torch.ones(len(queries)))
    empty = nearest(queries[:0], bank, 3, 0.1)
    assert empty[0].shape == (0, 3) and empty[1].shape == (0, 3)


def test_feature_keys_normalise_each_modality_and_mark_entities_without_any():
    image = (torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]]), torch.tensor([True, False, True]))
    text = (torch.tensor([[0.0, 2.0], [5.0, 0.0], [0.0, 0.0]]), torch.tensor([True, True, False]))
    keys, has = feature_keys([image, text])
    assert has.tolist() == [True, True, True]
    expected0 = torch.tensor([0.6, 0.8, 0.0, 1.0]) / (2**0.5)
    assert torch.allclose(keys[0], expected0)
    assert torch.allclose(keys[1], torch.tensor([0.0, 0.0, 1.0, 0.0]))
    assert torch.allclose(keys.norm(dim=1), torch.ones(3))


def borrowed_reference(rep, features, entity, exclude_self):
    """The borrowed structural part of ``entity``, computed the slow way."""
    s, _, _ = parts(rep, features)
    keys, has = feature_keys([features[m] for m in rep.modalities])
    seen = torch.zeros(8, dtype=torch.bool)
    seen[[A, B, C, D]] = True
    bank = (seen & has).nonzero().squeeze(1).tolist()
    sims = {j: float(keys[entity] @ keys[j]) for j in bank if not (exclude_self and j == entity)}
    chosen = sorted(sims, key=sims.get, reverse=True)[: rep.neighbours]
    w = torch.softmax(torch.tensor([sims[j] for j in chosen]) / rep.neighbour_temperature, 0)
    return sum(wi * s[j] for wi, j in zip(w, chosen, strict=True))


def test_unseen_entities_borrow_the_weighted_structure_of_their_nearest_seen_entities():
    rep, features = fused(neighbours=2, neighbour_temperature=0.5)
    rep.eval()
    s, v, t = parts(rep, features)
    proj_v, proj_t = rep.projections["image"](v), rep.projections["text"](t)
    table = rep().detach()
    # e: unseen, image only -> mean of the borrowed part and its image
    expected_e = (borrowed_reference(rep, features, E, False) + proj_v[E]) / 2
    assert torch.allclose(table[E], expected_e, atol=1e-6)
    # g: unseen, image + text
    expected_g = (borrowed_reference(rep, features, G, False) + proj_v[G] + proj_t[G]) / 3
    assert torch.allclose(table[G], expected_g, atol=1e-6)
    # h: unseen with no feature: nothing to search with, still the zero vector
    assert torch.equal(table[H], torch.zeros(rep.dim))
    # seen entities keep their own part
    assert torch.allclose(table[A], (s[A] + proj_v[A] + proj_t[A]) / 3, atol=1e-6)
    assert torch.allclose(table[D], s[D])


def test_dropped_out_entities_do_not_borrow_in_training_and_gradients_reach_neighbours():
    torch.manual_seed(0)
    rep, features = fused(neighbours=2, structural_dropout=0.5)
    s, v, t = parts(rep, features)
    proj_v, proj_t = rep.projections["image"](v), rep.projections["text"](t)
    own_a = (s[A] + proj_v[A] + proj_t[A]) / 3
    masked_a = (proj_v[A] + proj_t[A]) / 2
    rep.train()
    rows = torch.stack([rep()[A] for _ in range(40)]).detach()
    is_masked = torch.isclose(rows, masked_a, atol=1e-6).all(1)
    is_own = torch.isclose(rows, own_a, atol=1e-6).all(1)
    assert (is_masked | is_own).all() and 5 < int(is_masked.sum()) < 35
    rep.zero_grad()
    rep()[[E, G]].sum().backward()  # unseen entities borrow in training too: neighbours learn
    assert (rep.structural.weight.grad.abs().sum(1) > 0).any()


def test_new_entities_borrow_like_unseen_graph_entities():
    rep, features = fused(neighbours=2)
    rep.eval()
    table = rep().detach()
    new = rep.represent(
        {
            "image": features["image"][0][[E, G]],
            "text": (features["text"][0][[E, G]], features["text"][1][[E, G]]),
        }
    )
    assert torch.allclose(new, table[[E, G]], atol=1e-6)


def test_a_representation_without_seen_features_cannot_borrow():
    image = (torch.zeros(8, 2), torch.zeros(8, dtype=torch.bool))
    image[1][E] = True
    with pytest.raises(ConfigError, match="neighbours"):
        fused(features={"image": image}, neighbours=2)


def test_neighbour_options_are_validated():
    with pytest.raises(ConfigError, match="neighbours"):
        load_config(overrides=["model.neighbours=-1"])
    with pytest.raises(ConfigError, match="neighbour_temperature"):
        load_config(overrides=["model.neighbour_temperature=0"])
    assert load_config()["model"]["neighbours"] == 0
