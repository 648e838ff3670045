"""Sharded entity tables (:mod:`vlkge.models.sharded`) in a one-rank gloo group: the rows a
sharded table fetches are those of the whole table, and the boundaries cut every per-entity
table of a model at the same entities. The multi-rank runs are in
``tests/training/test_sharded_training.py``."""

from __future__ import annotations

import launch
import pytest
import torch

from vlkge.errors import VlkgeError
from vlkge.models import sharded as sharded_module
from vlkge.models.imaginary import ComplexEntities
from vlkge.models.multimodal import FusedEntityRepresentation
from vlkge.models.representations import Embedding
from vlkge.models.sharded import (
    ShardedEmbedding,
    entity_bounds,
    entity_shard,
    shard_model,
    sharded_tables,
)


@pytest.fixture
def group():
    with launch.one_rank_group():
        yield


def test_bounds_cut_near_equal_contiguous_slices():
    assert entity_bounds(10, 3) == [0, 3, 6, 10]
    assert entity_bounds(4, 4) == [0, 1, 2, 3, 4]
    with pytest.raises(VlkgeError, match="cannot shard 2 entities across 3 ranks"):
        entity_bounds(2, 3)


@pytest.mark.parametrize("world", [2, 3])
def test_drawn_shards_concatenate_to_the_whole_table(world, monkeypatch):
    """Each rank draws only its rows, in blocks smaller than the table: concatenated they are
    one process's Xavier table bit for bit, and every rank's generator ends where that of one
    process does."""
    monkeypatch.setattr(sharded_module, "DRAW_BLOCK", 5 * 4)  # blocks of 4 rows
    count, width = 23, 5
    torch.manual_seed(3)
    whole = Embedding(count, width).weight.detach()
    after = torch.rand(4)
    bounds = entity_bounds(count, world)
    shards = []
    for rank in range(world):
        torch.manual_seed(3)
        shards.append(ShardedEmbedding.drawn(count, width, bounds, rank).weight)
        assert torch.equal(torch.rand(4), after)
    assert torch.equal(torch.cat(shards), whole)


def test_fetched_rows_are_the_table_rows_and_keep_their_gradient(group):
    table = Embedding(7, 3)
    sharded = ShardedEmbedding.of(table, [0, 7], 0)
    ids = torch.tensor([[5, 1], [5, 0]])
    out = sharded(ids)
    assert torch.equal(out, table.weight.detach()[ids])
    (fetched,) = sharded.fetched
    assert torch.equal(fetched.ids, torch.tensor([0, 1, 5]))
    out.sum().backward()
    assert torch.equal(fetched.rows.grad, torch.tensor([[1.0] * 3, [1.0] * 3, [2.0] * 3]))
    with torch.no_grad():
        sharded(ids)
    assert len(sharded.fetched) == 1  # evaluation keeps nothing for backward
    with pytest.raises(VlkgeError, match="never whole"):
        sharded()


def test_shard_model_cuts_row_tables_at_entity_bounds():
    """Rank 1 of 2 holds the structural and free imaginary rows of entities 3..5 exactly."""
    seen = torch.tensor([1, 0, 1, 1, 0, 1], dtype=torch.bool)
    text = torch.tensor([0, 1, 0, 0, 1, 0], dtype=torch.bool)
    features = {
        "image": (torch.randn(6, 5), torch.tensor([1, 1, 0, 1, 1, 0], dtype=torch.bool)),
        "text": (torch.randn(6, 4), text),
    }
    holder = torch.nn.Module()
    holder.entities = ComplexEntities.around(FusedEntityRepresentation(features, 3, seen), False)
    structural = holder.entities.real.structural.weight.detach().clone()
    free = holder.entities.imaginary.free.weight.detach().clone()
    assert shard_model(holder, 1, 2) == [0, 3, 6]
    assert entity_shard(holder) == (3, 6)
    tables = dict(sharded_tables(holder))
    assert set(tables) == {"entities.real.structural", "entities.imaginary.free"}
    # seen entities 3, 5 are structural rows 2, 3; every entity is free (seen or text)
    assert torch.equal(tables["entities.real.structural"].weight, structural[2:4])
    assert torch.equal(tables["entities.imaginary.free"].weight, free[3:6])
    assert not any("structural" in n or ".free." in n for n, _ in holder.named_parameters())


def test_neighbour_borrowing_is_refused():
    seen = torch.tensor([1, 0, 1, 1], dtype=torch.bool)
    features = {"image": (torch.randn(4, 5), torch.ones(4, dtype=torch.bool))}
    holder = torch.nn.Module()
    holder.entities = FusedEntityRepresentation(features, 3, seen, neighbours=1)
    with pytest.raises(VlkgeError, match="model.neighbours"):
        shard_model(holder, 0, 2)
