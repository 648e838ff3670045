"""Regimes' batch scoring: the reciprocal shortcut equals scoring each side on its own."""

from __future__ import annotations

import pytest
import torch

from vlkge.models.backbones import BACKBONES
from vlkge.models.model import KGEModel
from vlkge.models.representations import Embedding
from vlkge.training.regimes import _by_side


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("with_candidates", [False, True])
def test_reciprocal_batch_scores_equal_per_side_scores(backbone, with_candidates):
    torch.manual_seed(0)
    interaction = BACKBONES[backbone]()
    dim, entities, relations = 6, 11, 3
    model = KGEModel(
        Embedding(entities, interaction.entity_parts * dim),
        Embedding(2 * relations, interaction.relation_width(dim)),
        interaction,
        relations,
        reciprocal=True,
    )
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
