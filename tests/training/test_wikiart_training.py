"""The WikiArt-MKG training protocol (SPEC 4): tail corruption from per-relation pools, with or
without replacement, per-epoch relation subsampling, training-only inverse relations."""

import json

import pytest
import torch

from vlkge.config import load_config
from vlkge.data.graph import KnowledgeGraph
from vlkge.data.index import TripleIndex
from vlkge.data.triples import LabeledTriples
from vlkge.errors import ConfigError
from vlkge.training.build import build_regime
from vlkge.training.regimes import KvsAll, NegativeSampling, OneVsAll
from vlkge.training.run import train
from vlkge.training.sampler import NegativeSampler


def _pool_graph(tails_per_relation=(6, 40), heads=30, seed=0):
    """Heads 0..heads-1; relation r links every head to one of its own tails."""
    g = torch.Generator().manual_seed(seed)
    rows, start = [], heads
    for rel, count in enumerate(tails_per_relation):
        tails = torch.arange(start, start + count)
        pick = tails[torch.randint(count, (heads,), generator=g)]
        rows.append(torch.stack([torch.arange(heads), torch.full((heads,), rel), pick], 1))
        start += count
    return torch.cat(rows), start


@pytest.mark.parametrize("replacement", [False, True])
def test_tail_negatives_come_from_the_relation_pool(replacement):
    triples, num_entities = _pool_graph()
    known = TripleIndex(triples, num_entities, 2)
    pools = NegativeSampler.relation_pools(triples)
    sampler = NegativeSampler(num_entities, 2, "tail", known, pools, replacement)
    corrupt_head, negatives = sampler.sample(triples, torch.Generator().manual_seed(1))
    assert not corrupt_head.any()
    known_set = {tuple(x) for x in triples.tolist()}
    for (h, r, _), row in zip(triples.tolist(), negatives.tolist(), strict=True):
        pool = set(triples[triples[:, 1] == r][:, 2].tolist())
        assert set(row) <= pool
        assert not any((h, r, e) in known_set for e in row)


def test_without_replacement_negatives_are_distinct():
    # a pool of 6 tails, 2 negatives: repeats are likely unless they are rejected
    triples, num_entities = _pool_graph((6, 6))
    pools = NegativeSampler.relation_pools(triples)
    sampler = NegativeSampler(num_entities, 2, "tail", None, pools, replacement=False)
    positives = triples.repeat(50, 1)
    _, negatives = sampler.sample(positives, torch.Generator().manual_seed(0))
    assert (negatives[:, 0] != negatives[:, 1]).all()


def test_with_replacement_negatives_may_repeat():
    triples, num_entities = _pool_graph((6, 6))
    pools = NegativeSampler.relation_pools(triples)
    sampler = NegativeSampler(num_entities, 2, "tail", None, pools, replacement=True)
    positives = triples.repeat(50, 1)
    _, negatives = sampler.sample(positives, torch.Generator().manual_seed(0))
    repeats = (negatives[:, 0] == negatives[:, 1]).double().mean().item()
    assert 0.08 < repeats < 0.26  # independent uniform draws from 6: 1/6 repeat


def test_with_replacement_allows_more_negatives_than_entities():
    sampler = NegativeSampler(5, 8, "tail", replacement=True)
    _, negatives = sampler.sample(torch.zeros(4, 3, dtype=torch.long), torch.Generator())
    assert negatives.shape == (4, 8) and int(negatives.max()) < 5


def _subsampling_regime(fraction=0.01, big=10_000, small=100):
    train = torch.cat(
        [
            torch.stack(
                [
                    torch.arange(big),
                    torch.zeros(big, dtype=torch.long),
                    torch.ones(big, dtype=torch.long),
                ],
                1,
            ),
            torch.stack(
                [
                    torch.arange(small),
                    torch.ones(small, dtype=torch.long),
                    torch.zeros(small, dtype=torch.long),
                ],
                1,
            ),
        ]
    )
    sampler = NegativeSampler(big, 1, "tail")
    return NegativeSampling(train, 64, sampler, subsample={0: fraction}), train


def _epoch(regime, generator):
    return torch.cat(list(regime.batches(generator)))


def test_subsampling_keeps_the_fraction_and_every_other_triple():
    regime, train = _subsampling_regime(0.01)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        epoch = _epoch(regime, g)
        assert len(epoch) == regime.epoch_size() == 100 + 100
        assert regime.num_batches() == -(-200 // 64)
        assert int((epoch[:, 1] == 0).sum()) == 100  # 1% of 10,000
        assert sorted(epoch[epoch[:, 1] == 1][:, 0].tolist()) == list(range(100))
        assert len(torch.unique(epoch, dim=0)) == len(epoch)  # drawn without replacement
        # every kept triple is a training triple
        assert torch.isin(epoch[:, 0] * 2 + epoch[:, 1], train[:, 0] * 2 + train[:, 1]).all()


def test_subsampling_is_fresh_each_epoch_and_repeatable_under_the_seed():
    regime, _ = _subsampling_regime(0.01)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    first, second = _epoch(regime, g1), _epoch(regime, g1)
    assert torch.equal(first, _epoch(regime, g2))
    assert torch.equal(second, _epoch(regime, g2))
    kept = lambda epoch: set(epoch[epoch[:, 1] == 0][:, 0].tolist())  # noqa: E731
    assert kept(first) != kept(second)
    # resuming from the generator state saved after epoch 1 draws epoch 2 again
    g3 = torch.Generator().manual_seed(7)
    _epoch(regime, g3)
    g4 = torch.Generator()
    g4.set_state(g3.get_state())
    assert torch.equal(_epoch(regime, g4), second)


def test_subsampling_edge_fractions():
    regime, _ = _subsampling_regime(0.0)
    assert regime.epoch_size() == 100
    regime, _ = _subsampling_regime(1.0)
    assert regime.epoch_size() == 10_100
    regime, _ = _subsampling_regime(1e-6)  # rounds to 0, but a positive fraction keeps one
    assert regime.epoch_size() == 101


def test_subsampling_in_query_regimes():
    train = torch.tensor([[i, 0, 100 + i % 3] for i in range(100)] + [[0, 1, 1], [1, 1, 2]])
    for regime in (
        OneVsAll(train, 16, subsample={0: 0.1}),
        KvsAll(train, 16, 110, 2, subsample={0: 0.1}),
    ):
        epoch = _epoch(regime, torch.Generator().manual_seed(0))
        rel = epoch[:, regime.relation_column]
        total0 = int((regime.examples()[:, regime.relation_column] == 0).sum())
        assert int((rel == 0).sum()) == round(0.1 * total0)
        assert int((rel == 1).sum()) == int((regime.examples()[:, 2] == 1).sum())


# --- configuration ----------------------------------------------------------------------------
def _kg():
    rows = [
        ("a1", "isCreatedByArtist", "x"),
        ("a2", "isCreatedByArtist", "y"),
        ("a1", "hasStyle", "s"),
    ]
    rows += [("a1", "isRelatedToArtwork", "a2"), ("a2", "isRelatedToArtwork", "a1")]
    labeled = LabeledTriples("mem", rows, list(range(1, len(rows) + 1)))
    return KnowledgeGraph.from_labeled("toy-art", {"train": labeled})


def test_config_subsample_and_replacement_keys():
    cfg = load_config(
        overrides=[
            "training.subsample.isRelatedToArtwork=1e-3",
            "training.subsample.hasStyle=1",
            "training.negatives.replacement=true",
        ]
    )
    assert cfg["training"]["subsample"] == {"isRelatedToArtwork": 0.001, "hasStyle": 1.0}
    assert cfg["training"]["negatives"]["replacement"] is True
    cfg = load_config(overrides=["training.subsample={}"])
    assert cfg["training"]["subsample"] == {}
    with pytest.raises(ConfigError, match=r"training.subsample.isRelatedToArtwork .*\[0, 1\]"):
        load_config(overrides=["training.subsample.isRelatedToArtwork=2"])
    with pytest.raises(ConfigError, match="training.subsample.hasStyle must be float"):
        load_config(overrides=["training.subsample.hasStyle=lots"])
    with pytest.raises(ConfigError, match="training.subsample must be a mapping"):
        load_config(overrides=["training.subsample=0.1"])


def test_unknown_relation_in_subsample_names_the_key():
    cfg = load_config(
        overrides=["training.subsample.isRelatedToArtwrk=0.1", "training.negatives.num=1"]
    )
    with pytest.raises(
        ConfigError, match=r"^training.subsample: unknown relation 'isRelatedToArtwrk'"
    ):
        build_regime(cfg, _kg())


def test_build_regime_wires_protocol_options():
    cfg = load_config(
        overrides=[
            "training.subsample.isRelatedToArtwork=0.5",
            "training.negatives.num=1",
            "training.negatives.side=tail",
            "training.negatives.pool=relation",
            "training.negatives.replacement=true",
        ]
    )
    kg = _kg()
    regime = build_regime(cfg, kg)
    assert regime.sampler.replacement and regime.sampler.pools is not None
    assert regime.subsample == {kg.relation_id("isRelatedToArtwork"): 0.5}
    assert regime.epoch_size() == 3 + 1


def test_training_only_inverse_relations():
    kg = _kg().with_inverse_relations({"isCreatedByArtist": "hasCreatedArtwork"})
    inv = kg.relation_id("hasCreatedArtwork")
    assert kg.relations[-1] == "hasCreatedArtwork"
    added = {(kg.entities[h], kg.entities[t]) for h, r, t in kg.train.tolist() if r == inv}
    assert added == {("x", "a1"), ("y", "a2")}
    assert len(kg.train) == 5 + 2
    # an inverse the data already have is completed, never duplicated
    again = kg.with_inverse_relations({"isCreatedByArtist": "hasCreatedArtwork"})
    assert torch.equal(again.train, kg.train) and again.relations == kg.relations
    sym = _kg().with_inverse_relations({"isRelatedToArtwork": "isRelatedToArtwork"})
    assert len(sym.train) == 5
    with pytest.raises(ConfigError, match="^dataset.inverse_relations: unknown relation 'created'"):
        _kg().with_inverse_relations({"created": "x"})


def _art_overrides(tmp_path, epochs):
    folder = tmp_path / "art"
    if not folder.is_dir():
        folder.mkdir()
        lines = ["head,relation,tail,mode"]
        for i in range(40):
            lines.append(f"art{i},isCreatedByArtist,artist{i % 4},train")
            lines.append(f"art{i},hasStyle,style{i % 3},train")
            lines.append(f"art{i},isRelatedToArtwork,art{(i + 1) % 40},train")
        for i in range(40, 46):
            split = "val" if i < 43 else "test"
            lines.append(f"art{i},isCreatedByArtist,artist{i % 4},{split}")
            lines.append(f"art{i},hasStyle,style{i % 3},{split}")
        (folder / "triples.csv").write_text("\n".join(lines) + "\n")
    return [
        f"dataset.name={folder}",
        "dataset.setting=inductive",
        "dataset.inverse_relations={isCreatedByArtist: hasCreatedArtwork}",
        "model.dim=8",
        f"training.epochs={epochs}",
        "training.batch_size=16",
        "training.negatives.num=1",
        "training.negatives.side=tail",
        "training.negatives.pool=relation",
        "training.negatives.replacement=true",
        "training.subsample.isRelatedToArtwork=0.1",
        "training.progress=false",
        "validation.patience=0",
        "evaluation.sides=[tail]",
        "evaluation.candidates=relation_pool",
        "evaluation.exclude_relations=[isRelatedToArtwork, hasCreatedArtwork]",
        "compile=false",
    ]


def test_wikiart_v2_style_run_is_repeatable(tmp_path):
    """A tiny end-to-end run with the v2 training options: same seed, same result."""
    first = train(load_config(overrides=_art_overrides(tmp_path, 2)), tmp_path / "run1")
    second = train(load_config(overrides=_art_overrides(tmp_path, 2)), tmp_path / "run2")
    assert first["test"]["both"]["count"] == 6
    assert first["test"] == second["test"]


def test_resumed_run_draws_the_same_subsamples(tmp_path):
    full = train(load_config(overrides=_art_overrides(tmp_path, 4)), tmp_path / "full")
    train(load_config(overrides=_art_overrides(tmp_path, 2)), tmp_path / "split")
    (tmp_path / "split" / "config.yaml").unlink()  # extend the run: same config but epochs
    resumed = train(load_config(overrides=_art_overrides(tmp_path, 4)), tmp_path / "split")
    assert resumed["test"] == full["test"]
    losses = [
        [json.loads(line)["loss"] for line in (tmp_path / run / "trace.jsonl").open()]
        for run in ("full", "split")
    ]
    assert losses[0] == losses[1] and len(losses[0]) == 4
