"""Dataset statistics: sizes, per-relation counts, unseen entities and inverse leakage."""

from __future__ import annotations

import json

import pytest

from vlkge.data import load_dataset
from vlkge.data.graph import KnowledgeGraph
from vlkge.data.stats import format_statistics, statistics
from vlkge.data.triples import LabeledTriples

# README of shared/data/wn9-img: per relation train / valid / test
WN9_RELATIONS = {
    "_hypernym": (5162, 583, 538),
    "_hyponym": (5120, 560, 603),
    "_part_of": (613, 74, 76),
    "_has_part": (598, 91, 72),
    "_member_of_domain_topic": (72, 11, 5),
    "_synset_domain_topic_of": (66, 11, 11),
    "_derivationally_related_form": (68, 5, 10),
    "_member_holonym": (21, 1, 2),
    "_member_meronym": (21, 1, 2),
}


def labeled(rows, path):
    return LabeledTriples(path, list(rows), list(range(1, len(rows) + 1)))


@pytest.fixture
def toy() -> KnowledgeGraph:
    train = [("a", "r1", "b"), ("b", "r1", "c"), ("c", "r2", "a"), ("a", "r2", "c")]
    valid = [("b", "r2", "a"), ("x", "r1", "a"), ("c", "r1", "b")]
    test = [("c", "r1", "a"), ("b", "r2", "c"), ("y", "r2", "z")]
    splits = {
        "train": labeled(train, "train.txt"),
        "valid": labeled(valid, "valid.txt"),
        "test": labeled(test, "test.txt"),
    }
    return KnowledgeGraph.from_labeled("toy", splits, unseen="keep")


def test_toy_statistics(toy):
    stats = statistics(toy)
    assert stats["name"] == "toy"
    assert stats["entities"] == 6 and stats["entities_in_train"] == 3
    assert stats["relations"] == 2
    assert stats["triples"] == {"train": 4, "valid": 3, "test": 3}
    assert stats["per_relation"] == {
        "r1": {"train": 2, "valid": 2, "test": 1},
        "r2": {"train": 2, "valid": 1, "test": 2},
    }
    assert stats["unseen_entities"] == {
        "valid": {"entities": 1, "triples": 1},
        "test": {"entities": 2, "triples": 1},
    }
    # reversed pair in train: valid (b,a) <- (a,b); (c,b) <- (b,c); test (c,a) <- (a,c)
    assert stats["inverse_leakage"]["valid"] == pytest.approx(2 / 3)
    assert stats["inverse_leakage"]["test"] == pytest.approx(1 / 3)
    # same pair in train: test (c,a) <- (c,a); (b,c) <- (b,c)
    assert stats["pair_leakage"]["valid"] == pytest.approx(0.0)
    assert stats["pair_leakage"]["test"] == pytest.approx(2 / 3)
    assert "modalities" not in stats
    json.dumps(stats)  # plain Python values only


def test_statistics_match_brute_force(toy):
    stats = statistics(toy)
    train_pairs = {(h, t) for h, _, t in toy.train.tolist()}
    for split in ("valid", "test"):
        rows = toy.splits[split].tolist()
        reverse = sum((t, h) in train_pairs for h, _, t in rows) / len(rows)
        same = sum((h, t) in train_pairs for h, _, t in rows) / len(rows)
        assert stats["inverse_leakage"][split] == pytest.approx(reverse)
        assert stats["pair_leakage"][split] == pytest.approx(same)


def test_train_only_graph():
    kg = KnowledgeGraph.from_labeled("t", {"train": labeled([("a", "r", "b")], "train.txt")})
    stats = statistics(kg)
    assert stats["triples"] == {"train": 1}
    assert stats["inverse_leakage"] == {} and stats["unseen_entities"] == {}
    assert "train 1" in format_statistics(stats)


def test_wn9_img_statistics(data_dir):
    stats = statistics(load_dataset("wn9-img"))
    assert stats["entities"] == 6_555 and stats["entities_in_train"] == 6_555
    assert stats["relations"] == 9
    assert stats["triples"] == {"train": 11_741, "valid": 1_337, "test": 1_319}
    assert stats["per_relation"] == {
        rel: dict(zip(("train", "valid", "test"), counts, strict=True))
        for rel, counts in WN9_RELATIONS.items()
    }
    assert stats["unseen_entities"] == {
        "valid": {"entities": 0, "triples": 0},
        "test": {"entities": 0, "triples": 0},
    }
    # README: 1,198 of 1,337 valid and 1,186 of 1,319 test triples have the reversed pair
    assert stats["inverse_leakage"]["valid"] == pytest.approx(1_198 / 1_337)
    assert stats["inverse_leakage"]["test"] == pytest.approx(1_186 / 1_319)
    assert round(stats["inverse_leakage"]["valid"], 3) == 0.896
    assert round(stats["inverse_leakage"]["test"], 3) == 0.899
    # "no overlap between splits": no valid/test triple repeats a train triple, though the
    # same pair may occur in train under another relation
    assert 0.0 <= stats["pair_leakage"]["valid"] < stats["inverse_leakage"]["valid"]
    assert stats["modalities"] == {"both": 0, "text_only": 6_555, "image_only": 0, "neither": 0}

    text = format_statistics(stats)
    assert "entities   6,555 (6,555 in train)" in text
    assert "train 11,741 / valid 1,337 / test 1,319" in text
    assert "valid: 89.6%" in text and "test: 89.9%" in text
    assert "text only 6,555" in text
    # relations listed by training count, largest first
    order = [line.split()[0] for line in text.splitlines() if line.startswith("_")]
    assert order[:2] == ["_hypernym", "_hyponym"]
    assert len(order) == 9


def test_nations_statistics(data_dir):
    stats = statistics(load_dataset("nations"))
    assert stats["triples"] == {"train": 1_592, "valid": 199, "test": 201}
    assert sum(c["train"] for c in stats["per_relation"].values()) == 1_592
    assert "modalities" not in stats  # PyKEEN's folder has no manifest
