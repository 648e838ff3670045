"""Negative sampler: distinct corruptions, known positives rejected, the right side corrupted."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes import random_triples
from vlkge.data.index import TripleIndex
from vlkge.errors import ConfigError
from vlkge.training.sampler import NegativeSampler


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    num=st.integers(1, 8),
    side=st.sampled_from(["both", "head", "tail"]),
    outside=st.booleans(),
)
def test_negatives_are_distinct_and_unknown(seed, num, side, outside):
    """Also for positives that are not themselves known (negatives filtered against another
    split), whose query's one known answer is then some other entity."""
    g = torch.Generator().manual_seed(seed)
    entities, relations = 12, 2
    known = random_triples(30, entities, relations, g)
    index = TripleIndex(known, entities, relations)
    sampler = NegativeSampler(entities, num, side, index)
    positives = known[:10]
    if outside:
        positives = random_triples(10, entities, relations, g)
    corrupt_head, negatives = sampler.sample(positives, g)
    if side != "both":
        assert bool(corrupt_head.all()) == (side == "head") and bool((~corrupt_head).all()) == (
            side == "tail"
        )
    known_set = {tuple(x) for x in known.tolist()}
    for (h, r, t), head, row in zip(
        positives.tolist(), corrupt_head.tolist(), negatives.tolist(), strict=True
    ):
        answers = {e for e in range(entities) if ((e, r, t) if head else (h, r, e)) in known_set}
        left = entities - len(answers)
        if left >= 2 * num:
            assert len(set(row)) == len(row)
        if left > 0:
            assert not answers & set(row)


def test_coin_is_fair():
    sampler = NegativeSampler(1000, 5)
    corrupt_head, _ = sampler.sample(
        torch.zeros(20_000, 3, dtype=torch.long), torch.Generator().manual_seed(0)
    )
    assert abs(corrupt_head.double().mean().item() - 0.5) < 0.02


def test_too_many_negatives_is_a_config_error():
    with pytest.raises(ConfigError, match="negatives.num"):
        NegativeSampler(10, 10)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("pool", [False, True])
def test_a_sampler_on_the_models_device_draws_the_same_negatives(device, pool):
    """Moved to the model's device (as training does), the sampler tests and redraws there but
    takes every random number from the same CPU generator: one seed, the same negatives."""
    g = torch.Generator().manual_seed(3)
    entities, relations = 40, 3
    triples = random_triples(300, entities, relations, g)
    index = TripleIndex(triples, entities, relations)
    pools = NegativeSampler.relation_pools(triples) if pool else None
    here = NegativeSampler(entities, 6, "both", index, pools)
    there = here.to(device)
    assert there is not here and here.device.type == "cpu" and there.device.type == device
    assert there.known.codes.device.type == device and here.known.codes.device.type == "cpu"
    if pool:
        assert there.pools["head"].values.device.type == device
    expected = here.sample(triples[:64], torch.Generator().manual_seed(7))
    got = there.sample(triples[:64].to(device), torch.Generator().manual_seed(7))
    for a, b in zip(expected, got, strict=True):
        assert b.device.type == device and torch.equal(a, b.cpu())
