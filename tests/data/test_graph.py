"""KnowledgeGraph.from_labeled: vocabularies, checks on the splits, unseen entities."""

from __future__ import annotations

import logging

import pytest
import torch

from vlkge.data.graph import KnowledgeGraph
from vlkge.data.manifest import EntityManifest
from vlkge.data.triples import LabeledTriples
from vlkge.errors import ConfigError, DataError, VlkgeError
from vlkge.terms import SPLITS

TRAIN = [("a", "r1", "b"), ("b", "r2", "c"), ("c", "r1", "a"), ("a", "r2", "d")]


def labeled(rows, path="split.txt", start=1):
    return LabeledTriples(path, list(rows), list(range(start, start + len(rows))))


def graph(train=TRAIN, valid=(("a", "r1", "c"),), test=(("b", "r2", "d"),), **kwargs):
    splits = {"train": labeled(train, "train.txt")}
    if valid is not None:
        splits["valid"] = labeled(valid, "valid.txt")
    if test is not None:
        splits["test"] = labeled(test, "test.txt")
    return KnowledgeGraph.from_labeled("toy", splits, **kwargs)


def labels(kg, split):
    return [
        (kg.entities[h], kg.relations[r], kg.entities[t]) for h, r, t in kg.splits[split].tolist()
    ]


def test_vocabularies_in_first_seen_order():
    kg = graph()
    assert kg.entities == ["a", "b", "c", "d"]
    assert kg.relations == ["r1", "r2"]
    assert kg.num_entities == 4 and kg.num_relations == 2
    assert kg.entity_index == {"a": 0, "b": 1, "c": 2, "d": 3}
    assert kg.relation_index == {"r1": 0, "r2": 1}
    assert kg.entity_id("c") == 2 and kg.relation_id("r2") == 1


def test_split_tensors():
    kg = graph()
    for split in SPLITS:
        tensor = kg.splits[split]
        assert tensor.dtype == torch.long and tensor.ndim == 2 and tensor.shape[1] == 3
    assert labels(kg, "train") == TRAIN
    assert labels(kg, "valid") == [("a", "r1", "c")]
    assert labels(kg, "test") == [("b", "r2", "d")]
    assert torch.equal(kg.train, kg.splits["train"])
    assert kg.all_triples().shape == (6, 3)
    assert kg.seen_in_train().tolist() == [True, True, True, True]


def test_duplicates_dropped_with_warning(caplog):
    train = [*TRAIN, TRAIN[0], TRAIN[2]]
    with caplog.at_level(logging.WARNING, logger="vlkge"):
        kg = graph(train=train, valid=[("a", "r1", "c"), ("a", "r1", "c")])
    assert labels(kg, "train") == TRAIN
    assert labels(kg, "valid") == [("a", "r1", "c")]
    assert "2 duplicate" in caplog.text and "1 duplicate" in caplog.text


def test_relation_only_in_test_names_file_and_line():
    splits = {
        "train": labeled(TRAIN, "data/train.txt"),
        "test": labeled([("a", "r1", "b"), ("a", "r9", "b")], "data/test.txt", start=10),
    }
    with pytest.raises(DataError, match="relation 'r9'") as info:
        KnowledgeGraph.from_labeled("toy", splits)
    assert str(info.value).startswith("data/test.txt:11:")


def test_unseen_entity_is_an_error_by_default():
    with pytest.raises(DataError, match="entity 'z'") as info:
        graph(test=[("b", "r2", "d"), ("z", "r1", "a")])
    assert str(info.value).startswith("test.txt:2:")


def test_unseen_entity_keep():
    kg = graph(test=[("b", "r2", "d"), ("z", "r1", "a")], unseen="keep")
    assert kg.entities == ["a", "b", "c", "d", "z"]
    assert labels(kg, "test") == [("b", "r2", "d"), ("z", "r1", "a")]
    assert kg.seen_in_train().tolist() == [True, True, True, True, False]


def test_unseen_entity_drop(caplog):
    with caplog.at_level(logging.WARNING, logger="vlkge"):
        kg = graph(test=[("b", "r2", "d"), ("z", "r1", "a"), ("a", "r1", "y")], unseen="drop")
    assert kg.entities == ["a", "b", "c", "d"]
    assert labels(kg, "test") == [("b", "r2", "d")]
    assert "2 triple(s)" in caplog.text


def test_unseen_entity_allowed_when_inductive():
    kg = graph(valid=[("y", "r2", "a")], test=[("z", "r1", "a")], inductive=True)
    assert kg.inductive
    # train entities first, then unseen ones in order of appearance
    assert kg.entities == ["a", "b", "c", "d", "y", "z"]
    assert labels(kg, "valid") == [("y", "r2", "a")]
    assert labels(kg, "test") == [("z", "r1", "a")]


def test_inductive_with_unseen_error_still_allows():
    kg = graph(test=[("z", "r1", "a")], inductive=True, unseen="error")
    assert "z" in kg.entity_index


def test_inductive_manifest_entities_get_ids():
    manifest = EntityManifest()
    manifest.add_text("a", "the letter a")
    manifest.add_image("orphan", "/img/orphan.jpg")
    kg = graph(manifest=manifest, inductive=True)
    assert kg.entities[-1] == "orphan"
    assert kg.manifest is manifest
    # the transductive graph does not grow
    assert "orphan" not in graph(manifest=manifest).entities


def test_bad_unseen_value():
    with pytest.raises(ValueError):
        graph(unseen="ignore")


def test_no_train_split():
    with pytest.raises(DataError, match="no train split"):
        KnowledgeGraph.from_labeled("toy", {"test": labeled(TRAIN)})


def test_unknown_split_key():
    with pytest.raises(DataError, match="unknown split name 'val'"):
        KnowledgeGraph.from_labeled("toy", {"train": labeled(TRAIN), "val": labeled(TRAIN)})


def test_empty_split():
    with pytest.raises(DataError, match="valid split is empty") as info:
        graph(valid=[])
    assert str(info.value).startswith("valid.txt:")


def test_only_train():
    kg = graph(valid=None, test=None)
    assert set(kg.splits) == {"train"}
    assert kg.all_triples().shape == (4, 3)


def test_unknown_labels():
    kg = graph()
    with pytest.raises(VlkgeError, match="^unknown entity 'zz'"):
        kg.entity_id("zz")
    with pytest.raises(VlkgeError, match="^unknown relation 'rr'.*r1, r2"):
        kg.relation_id("rr")


def test_display_name():
    kg = graph()
    kg.names = {"a": "Alpha"}
    assert kg.display_name(0) == "Alpha"
    assert kg.display_name(1) == "b"


def test_self_loops_kept():
    kg = graph(train=[*TRAIN, ("a", "r1", "a")])
    assert ("a", "r1", "a") in labels(kg, "train")


def test_findings_are_debug_only_when_quiet(caplog):
    """A graph loaded again for a trained run (evaluate, predict) does not repeat them."""
    findings = {
        "train": [*TRAIN, ("a", "r1", "a"), TRAIN[0]],  # a self-loop and a duplicate
        "test": [("a", "r1", "b")],  # also in train
    }
    splits = {name: labeled(rows, f"{name}.txt") for name, rows in findings.items()}
    with caplog.at_level(logging.DEBUG, logger="vlkge"):
        KnowledgeGraph.from_labeled("toy", splits)
        loud = [
            (r.levelno, r.getMessage()) for r in caplog.records if "(the first" in r.getMessage()
        ]
        caplog.clear()
        KnowledgeGraph.from_labeled("toy", splits, quiet=True)
        quiet = [
            (r.levelno, r.getMessage()) for r in caplog.records if "(the first" in r.getMessage()
        ]
    assert [level for level, _ in loud] == [logging.WARNING, logging.INFO, logging.WARNING]
    assert [message for _, message in quiet] == [message for _, message in loud]
    assert {level for level, _ in quiet} == {logging.DEBUG}


LONG = "q" * 10_000


def test_long_ids_are_cut_in_errors():
    kg = graph()
    for lookup in (kg.entity_id, kg.relation_id):
        with pytest.raises(VlkgeError) as info:
            lookup(LONG)
        assert len(str(info.value)) < 400 and "qqq..." in str(info.value)
    error = kg.unknown_relation(LONG, "training.subsample")
    assert isinstance(error, ConfigError) and str(error).startswith("training.subsample: unknown")
    assert len(str(error)) < 400
    for valid in ((("a", LONG, "b"),), (("a", "r1", LONG),)):
        with pytest.raises(DataError) as info:
            graph(valid=valid)
        assert str(info.value).startswith("valid.txt:1: ") and len(str(info.value)) < 400
        assert "qqq..." in str(info.value)


def test_long_relation_names_are_cut_in_the_known_list():
    kg = graph(train=[("a", LONG, "b"), ("b", "r2", "c")], valid=None, test=None)
    message = str(kg.unknown_relation("zz"))
    assert len(message) < 400 and f"known: {'q' * 27}..., r2)" in message
