"""Inductive splits: held-out entities leave train, valid/test entities are disjoint, the folder
loads in the inductive setting, and WN9-IMG at 10% checks out statistically."""

from __future__ import annotations

import json

import pytest
import torch

from vlkge.cli import main
from vlkge.config import load_config
from vlkge.data.datasets import load_dataset
from vlkge.data.inductive import eligible_entities, make_inductive_split, split_inductive
from vlkge.data.stats import statistics
from vlkge.errors import DataError, VlkgeError

# a star around "hub" plus a ring, so that some candidates must be rejected (holding out
# "hub" would leave the leaves without training triples)
TRAIN = [("hub", "r", f"leaf{i}") for i in range(6)] + [
    (f"n{i}", "s", f"n{(i + 1) % 8}") for i in range(8)
]
TRAIN += [("n0", "t", "n4"), ("n2", "t", "n6"), ("n1", "s", "hub"), ("n5", "s", "hub")]
VALID = [("n0", "s", "n2"), ("n3", "s", "n5")]
TEST = [("n1", "s", "n3"), ("n4", "t", "n0")]
NO_MODALITY = {"n7", "leaf5"}


def write_manifest(folder, entities):
    rows = [f"{e}\ttext\tabout {e}\n" for e in entities if e not in NO_MODALITY]
    rows.append("n3\timage\tpictures/n3.jpg\n")
    (folder / "manifest.tsv").write_text("".join(rows), encoding="utf-8")
    names = [f"{e}\tthe {e}\n" for e in entities]
    (folder / "entity2name.txt").write_text("".join(names), encoding="utf-8")


@pytest.fixture
def toy(tmp_path, make_dataset):
    folder = make_dataset(tmp_path / "toy", train=TRAIN, valid=VALID, test=TEST)
    entities = sorted({e for h, _, t in TRAIN + VALID + TEST for e in (h, t)})
    write_manifest(folder, entities)
    return folder


def entities_of(rows):
    return {e for h, _, t in rows for e in (h, t)}


def check_split(split, kg):
    """The invariants every inductive split keeps."""
    valid, test = set(split.held_out["valid"]), set(split.held_out["test"])
    assert not valid & test
    train_entities = entities_of(split.splits["train"])
    assert not (valid | test) & train_entities  # no held-out entity in train
    assert not test & entities_of(split.splits["valid"])  # test entities never in valid
    assert not valid & entities_of(split.splits["test"])
    # every entity that was in train and is kept is still in train; so is every relation
    kept = set(kg.entities[i] for i in kg.seen_in_train().nonzero().squeeze(1).tolist())
    assert kept - valid - test <= train_entities
    assert {r for _, r, _ in split.splits["train"]} == set(kg.relations)
    # every held-out entity keeps an evaluation triple with a kept (seen) entity
    for group, held in (("valid", valid), ("test", test)):
        rows = split.splits[group]
        for e in held:
            assert any((h == e) != (t == e) and {h, t} - {e} <= train_entities for h, _, t in rows)
    assert split.counts["held_out_without_triples"] == 0
    assert len(valid) - len(test) in (0, -1)  # half each, test gets the odd one


def test_toy_split_rules(toy):
    kg = load_dataset(str(toy))
    assert set(kg.entities[i] for i in eligible_entities(kg)) == set(kg.entities) - NO_MODALITY
    split = make_inductive_split(kg, fraction=0.2, seed=3)
    assert split.counts["target"] == round(0.2 * kg.num_entities)
    assert split.counts["held_out"] == len(split.held_out["valid"]) + len(split.held_out["test"])
    held = set(split.held_out["valid"]) | set(split.held_out["test"])
    assert not held & NO_MODALITY  # entities without any modality are never held out
    assert "hub" not in held  # it is the only training neighbour of the leaves
    check_split(split, kg)
    # original triples are all accounted for: kept, moved or dropped
    total = sum(split.counts["triples_after"].values())
    dropped = split.counts["dropped_between_held_out"] + split.counts["dropped_across_splits"]
    assert total + dropped == sum(split.counts["triples_before"].values())


@pytest.mark.parametrize("seed", range(6))
def test_toy_split_invariants_over_seeds(toy, seed):
    kg = load_dataset(str(toy))
    for pairs in ("drop", "keep"):
        check_split(make_inductive_split(kg, fraction=0.25, seed=seed, pairs=pairs), kg)


def test_seed_decides_and_repeats(toy):
    kg = load_dataset(str(toy))
    a = make_inductive_split(kg, 0.2, seed=1)
    assert make_inductive_split(kg, 0.2, seed=1).held_out == a.held_out
    others = [make_inductive_split(kg, 0.2, seed=s).held_out for s in range(2, 8)]
    assert any(o != a.held_out for o in others)


def test_triples_between_held_out_entities(tmp_path, make_dataset):
    # x and y share a triple; with everything else they would be fine to hold out
    train = [("x", "r", "a"), ("y", "r", "a"), ("x", "s", "y"), ("a", "s", "b"), ("b", "r", "a")]
    train += [("c", "r", "a"), ("c", "s", "b")]
    folder = make_dataset(tmp_path / "pairs", train=train, valid=[("a", "r", "b")], test=train[:1])
    kg = load_dataset(str(folder), unseen="keep")
    found = None
    for seed in range(40):
        split = make_inductive_split(kg, fraction=0.4, seed=seed)  # 2 of 5 entities
        if {*split.held_out["valid"], *split.held_out["test"]} == {"x", "y"}:
            found = seed
            break
    assert found is not None
    dropped = make_inductive_split(kg, 0.4, found, pairs="drop")
    assert dropped.counts["dropped_between_held_out"] == 1
    assert all({h, t} != {"x", "y"} for s in dropped.splits.values() for h, _, t in s)
    kept = make_inductive_split(kg, 0.4, found, pairs="keep")
    # x and y fall in different splits (one each): keeping the pair would leak one into the other
    assert kept.counts["dropped_across_splits"] == 1
    check_split(kept, kg)


def test_same_split_pairs_are_kept(tmp_path, make_dataset):
    # four held out of eight: pairs inside one split survive with pairs=keep
    train = [(f"h{i}", "r", "a") for i in range(4)] + [("h0", "s", "h2"), ("h1", "s", "h3")]
    train += [("a", "s", "b"), ("b", "r", "c"), ("c", "s", "d"), ("d", "r", "a")]
    folder = make_dataset(
        tmp_path / "same", train=train, valid=[("a", "r", "c")], test=[("b", "s", "d")]
    )
    kg = load_dataset(str(folder))
    for seed in range(60):
        split = make_inductive_split(kg, fraction=0.5, seed=seed, pairs="keep")
        group = split.group()
        if group.get("h0") and group.get("h0") == group.get("h2"):
            assert ("h0", "s", "h2") in split.splits[group["h0"]]
            check_split(split, kg)
            return
    pytest.fail("no seed put h0 and h2 in one split")


def test_bad_fractions_and_too_few_candidates(toy, tmp_path, make_dataset):
    kg = load_dataset(str(toy))
    for fraction in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(VlkgeError, match="between 0 and 1"):
            make_inductive_split(kg, fraction)
    with pytest.raises(VlkgeError, match="holds out no entity"):
        make_inductive_split(kg, 0.001)
    with pytest.raises(VlkgeError, match="fewer than"):
        make_inductive_split(kg, 0.95)
    with pytest.raises(VlkgeError, match="pairs"):
        make_inductive_split(kg, 0.1, pairs="maybe")


def test_written_folder_loads_inductively(toy, tmp_path):
    from vlkge.data.datasets import load_graph
    from vlkge.models import build_model

    out = tmp_path / "ind"
    split = split_inductive(str(toy), out, fraction=0.2, seed=3)
    for name in ("train.txt", "valid.txt", "test.txt", "manifest.tsv", "README.txt", "split.json"):
        assert (out / name).is_file()
    info = json.loads((out / "split.json").read_text())
    assert info["held_out"] == split.held_out and info["seed"] == 3 and info["fraction"] == 0.2
    assert "held out" in (out / "README.txt").read_text()
    with pytest.raises(DataError, match="inductive"):
        load_dataset(str(out))  # transductive loading refuses unseen entities
    cfg = load_config(
        overrides=[
            f"dataset.name={out}",
            "dataset.setting=inductive",
            "model.dim=4",
            "model.modalities=[text]",
        ]
    )
    kg = load_graph(cfg["dataset"])
    held = [*split.held_out["valid"], *split.held_out["test"]]
    ids = torch.tensor([kg.entity_id(e) for e in held])
    assert not kg.seen_in_train()[ids].any()
    # texts, names and the (now absolute) image path travel with the folder
    assert kg.manifest.texts["n0"] == ["about n0"]
    assert kg.manifest.images["n3"] == [str((toy / "pictures" / "n3.jpg").resolve())]
    assert kg.names["n0"] == "the n0"
    # the fused representation masks the structural part of the held-out entities
    text = torch.randn(kg.num_entities, 3)
    mask = kg.manifest.availability(kg.entities)["text"]
    model = build_model(cfg["model"], kg, {"text": (text, mask)})
    assert not model.entities.present[ids, 0].any()
    assert model.entities.present[kg.seen_in_train(), 0].all()


def test_refuses_to_overwrite_without_force(toy, tmp_path):
    out = tmp_path / "ind"
    split_inductive(str(toy), out, fraction=0.2, seed=3)
    with pytest.raises(VlkgeError, match="--force"):
        split_inductive(str(toy), out, fraction=0.2, seed=4)
    split = split_inductive(str(toy), out, fraction=0.2, seed=4, force=True)
    assert json.loads((out / "split.json").read_text())["held_out"] == split.held_out


def test_wn9_img_ten_percent(data_dir, tmp_path, capsys):
    out = tmp_path / "wn9-ind"
    code = main(
        ["datasets", "split-inductive", "wn9-img", "--fraction", "0.1", "--seed", "42"]
        + ["--out", str(out), "--data-dir", str(data_dir)]
    )
    assert code == 0
    assert "held out 656 of 6555 entities" in capsys.readouterr().out
    info = json.loads((out / "split.json").read_text())
    valid, test = set(info["held_out"]["valid"]), set(info["held_out"]["test"])
    assert len(valid) == len(test) == 328
    kg = load_dataset(str(out), inductive=True)
    assert kg.num_entities == 6555
    stats = statistics(kg)
    assert stats["entities_in_train"] == 6555 - 656
    assert stats["relations"] == 9
    seen = kg.seen_in_train()
    assert not any(seen[kg.entity_id(e)] for e in valid | test)  # no held-out entity in train
    assert stats["unseen_entities"]["valid"]["entities"] == 328
    assert stats["unseen_entities"]["test"]["entities"] == 328
    assert (
        stats["unseen_entities"]["valid"]["triples"]
        == info["counts"]["triples_with_held_out"]["valid"]
    )
    assert (
        stats["unseen_entities"]["test"]["triples"]
        == info["counts"]["triples_with_held_out"]["test"]
    )
    test_entities = {kg.entities[e] for e in kg.splits["test"][:, [0, 2]].flatten().tolist()}
    valid_entities = {kg.entities[e] for e in kg.splits["valid"][:, [0, 2]].flatten().tolist()}
    assert not test & valid_entities and not valid & test_entities
    assert kg.manifest.coverage(kg.entities)["neither"] == 0  # texts for every entity
    assert len(kg.names) == 6555
    original = load_dataset("wn9-img", data_dir=data_dir)
    before = sum(len(s) for s in original.splits.values())
    c = info["counts"]
    after = sum(len(s) for s in kg.splits.values())
    assert after + c["dropped_between_held_out"] == before
    # the CLI's info command reads it in the inductive setting
    assert main(["datasets", "info", str(out), "--inductive", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["entities_in_train"] == 6555 - 656


def test_cli_errors(toy, tmp_path, capsys):
    assert main(["datasets", "split-inductive", str(toy)]) == 2
    assert "--out" in capsys.readouterr().err
    assert (
        main(
            [
                "datasets",
                "split-inductive",
                str(toy),
                "--fraction",
                "2",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "between 0 and 1" in capsys.readouterr().err
