"""Regimes' batch scoring: both sides in one call (the backbones' own forms, the base class's
split, the reciprocal shortcut) and the corruptions of negative sampling equal scoring each
query on its own."""

from __future__ import annotations

import pytest
import torch

from vlkge.models.backbones import BACKBONES
from vlkge.models.model import KGEModel
from vlkge.models.representations import Embedding
from vlkge.training.regimes import _by_side


def make_model(backbone: str, reciprocal: bool, entities: int = 11, relations: int = 3):
    torch.manual_seed(0)
    interaction = BACKBONES[backbone]()
    dim = 6
    return KGEModel(
        Embedding(entities, interaction.entity_parts * dim),
        Embedding(2 * relations, interaction.relation_width(dim)),
        interaction,
        relations,
        reciprocal=reciprocal,
    )


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("with_candidates", [False, True])
@pytest.mark.parametrize("mode", ["reciprocal", "one_call", "base_split"])
def test_batch_scores_equal_per_side_scores(backbone, with_candidates, mode, monkeypatch):
    entities, relations = 11, 3
    model = make_model(backbone, mode == "reciprocal", entities, relations)
    if mode == "base_split":  # the base class's one call per side
        base = type(model.interaction).__mro__[1]
        monkeypatch.setattr(type(model.interaction), "score_sides", base.score_sides)
    queries = torch.stack(
        [
            torch.tensor([1, 0, 1, 0, 0, 1, 1]),  # side: 1 tail query, 0 head query
            torch.randint(entities, (7,)),
            torch.randint(relations, (7,)),
        ],
        dim=1,
    )
    candidates = torch.randint(entities, (7, 4)) if with_candidates else None
    got = _by_side(model, queries, candidates)
    for row, (side, anchor, relation) in enumerate(queries.tolist()):
        expected = model.score_against(
            "tail" if side else "head",
            torch.tensor([anchor]),
            torch.tensor([relation]),
            None if candidates is None else candidates[row : row + 1],
        )
        torch.testing.assert_close(got[row : row + 1], expected)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("reciprocal", [False, True])
def test_corruption_scores_equal_triple_scores(backbone, reciprocal):
    model = make_model(backbone, reciprocal)
    generator = torch.Generator().manual_seed(1)
    triples = torch.stack(
        [
            torch.randint(11, (6,), generator=generator),
            torch.randint(3, (6,), generator=generator),
            torch.randint(11, (6,), generator=generator),
        ],
        dim=1,
    )
    corrupt_head = torch.tensor([True, False, True, True, False, False])
    candidates = torch.randint(11, (6, 4), generator=generator)
    pos, neg = model.score_corruptions(triples, corrupt_head, candidates, model.entities())
    torch.testing.assert_close(pos, model.score_triples(triples))
    for row in range(6):
        corrupted = triples[row].repeat(4, 1)
        corrupted[:, 0 if corrupt_head[row] else 2] = candidates[row]
        if reciprocal and corrupt_head[row]:  # (?, r, t) is scored as (t, r_inverse, ?)
            corrupted = torch.stack([corrupted[:, 2], corrupted[:, 1] + 3, corrupted[:, 0]], dim=1)
        torch.testing.assert_close(neg[row], model.score_triples(corrupted))


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_corruption_gradients_equal_triple_gradients_and_stay_dense(backbone):
    """The shared gather of the positives' ends, summed with the candidates' gradients, is
    the gradient of plain triple scores, and dense (the fused optimisers need that)."""
    generator = torch.Generator().manual_seed(2)
    triples = torch.stack(
        [torch.randint(11, (6,), generator=generator), torch.randint(3, (6,), generator=generator),
         torch.randint(11, (6,), generator=generator)],
        dim=1,
    )  # fmt: skip
    corrupt_head = torch.tensor([True, False, True, True, False, False])
    candidates = torch.randint(11, (6, 4), generator=generator)
    grads = []
    for fused in (True, False):
        model = make_model(backbone, False)
        if fused:
            pos, neg = model.score_corruptions(triples, corrupt_head, candidates, model.entities())
        else:
            pos = model.score_triples(triples)
            corrupted = triples.unsqueeze(1).repeat(1, 4, 1)
            side = torch.where(corrupt_head, 0, 2)
            corrupted[torch.arange(6), :, side] = candidates
            neg = model.score_triples(corrupted.reshape(-1, 3)).view(6, 4)
        (pos.sum() + (neg * torch.linspace(0.5, 2, 4)).sum()).backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name, grad in grads[0].items():
        assert grad.layout == torch.strided, name
        torch.testing.assert_close(grad, grads[1][name])
