"""The WikiArt-MKG evaluation protocol (SPEC 5) on a small dataset in the published format.

The dataset is written the way the VL-KGE release ships it: one ``*_triples.csv`` with columns
head, relation, tail, mode (``train``/``val``/``test``), a ``manifest.tsv``, and feature pickles
mapping entity -> vector (or list / dict of vectors). Test artworks never occur in training.
The shipped ``configs/wikiart-mkg-v2`` config is loaded as is (only sizes and paths changed),
and the Evaluator's ranks are checked against a brute-force implementation of the protocol
written here from the raw CSV rows: tail prediction only; candidates of r = tails of r in any
split, or in the evaluated split for the artist-to-artist relations; filtered with every split;
similarity relations and the training-only inverse hasCreatedArtwork not evaluated.
"""

from __future__ import annotations

import csv
import pickle
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from vlkge.cli import main
from vlkge.config import load_config
from vlkge.evaluation.evaluator import Evaluator
from vlkge.training.run import train
from vlkge.training.setup import prepare

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "wikiart-mkg-v2" / "distmult-clip.yaml"
ARTIST_TO_ARTIST = {"isInfluencedBy", "isInfluencedOn", "isPupilOf", "isTeacherOf"}
EXCLUDED = {"isRelatedToArtwork", "isRelatedToArtist", "hasCreatedArtwork"}
WIDTH = 8


def _rows():
    rows = []
    train_art = [f"W{i}" for i in range(12)]
    for i, art in enumerate(train_art):
        rows.append((art, "isCreatedByArtist", f"A{i % 4}", "train"))
        rows.append((art, "hasStyle", f"S{i % 3}", "train"))
        rows.append((art, "isRelatedToArtwork", train_art[(i + 1) % 12], "train"))
    rows.append(("W0", "hasStyle", "S1", "train"))  # a second true style: filtered in ranking
    rows += [
        ("A0", "isInfluencedBy", "A1", "train"),
        ("A1", "isPupilOf", "A2", "train"),
        ("A2", "isTeacherOf", "A1", "train"),
        ("A1", "isInfluencedOn", "A0", "train"),
        ("A0", "isRelatedToArtist", "A1", "train"),
    ]
    # validation: unseen artworks V*, a new artist A4 for the artist-to-artist relations
    for i in range(3):
        rows.append((f"V{i}", "isCreatedByArtist", f"A{(i + 1) % 4}", "val"))
        rows.append((f"V{i}", "hasStyle", f"S{i % 3}", "val"))
    rows += [
        ("A3", "isInfluencedBy", "A4", "val"),
        ("V0", "isRelatedToArtwork", "W3", "val"),
    ]
    # test: unseen artworks T*, a style (S3) seen only here, new artists A5/A6
    for i in range(4):
        rows.append((f"T{i}", "isCreatedByArtist", f"A{i % 4}", "test"))
        rows.append((f"T{i}", "hasStyle", f"S{3 if i == 3 else i % 3}", "test"))
    rows += [
        ("T0", "hasStyle", "S2", "test"),  # two true styles: each filters the other
        ("A5", "isInfluencedBy", "A6", "test"),
        ("A1", "isInfluencedBy", "A5", "test"),
        ("A5", "isPupilOf", "A6", "test"),
        ("A6", "isTeacherOf", "A5", "test"),
        ("A6", "isInfluencedOn", "A5", "test"),
        ("T0", "isRelatedToArtwork", "W1", "test"),
        ("A5", "isRelatedToArtist", "A6", "test"),
    ]
    return rows


@pytest.fixture
def wikiart(tmp_path):
    """A dataset root with wikiart-mkg-v2/, the feature pickles and an imported cache."""
    root = tmp_path / "data"
    folder = root / "wikiart-mkg-v2"
    folder.mkdir(parents=True)
    rows = _rows()
    with open(folder / "wikiart_mkg_v2_triples.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["head", "relation", "tail", "mode"])
        writer.writerows(rows)
    entities = sorted({e for h, _, t, _ in rows for e in (h, t)})
    artworks = [e for e in entities if e[0] in "WVT"] + ["X0"]  # X0: an image, no triple
    textual = [e for e in entities if e[0] in "AS"]
    manifest = [f"{a}\timage\timages/{a}.jpg" for a in artworks]
    manifest += [f"{e}\ttext\t{'artist' if e[0] == 'A' else 'style'} {e[1:]}" for e in textual]
    (folder / "manifest.tsv").write_text("\n".join(manifest) + "\n", encoding="utf-8")

    rng = np.random.default_rng(0)
    images: dict = {a: rng.normal(size=WIDTH).astype(np.float32) for a in artworks}
    images["T0"] = [rng.normal(size=WIDTH).astype(np.float32) for _ in range(2)]  # averaged
    images["V0"] = {"a.jpg": rng.normal(size=WIDTH), "b.jpg": rng.normal(size=WIDTH)}
    texts = {
        e: torch.randn(WIDTH, generator=torch.Generator().manual_seed(i))
        for i, e in enumerate(textual)
    }
    features = tmp_path / "features"
    features.mkdir()
    with open(features / "wikiart_mkg_v2_vf_clip.pkl", "wb") as f:
        pickle.dump(images, f)
    with open(features / "wikiart_mkg_v2_tf_clip.pkl", "wb") as f:
        pickle.dump(texts, f)

    cache = tmp_path / "cache"
    overrides = [f"dataset.data_dir={root}", f"features.cache_dir={cache}"]
    code = main(
        [
            "encode",
            "--config",
            str(CONFIG),
            *[arg for o in overrides for arg in ("--set", o)],
            "--image-features",
            str(features / "wikiart_mkg_v2_vf_clip.pkl"),
            "--text-features",
            str(features / "wikiart_mkg_v2_tf_clip.pkl"),
        ]
    )
    assert code == 0
    overrides += ["model.dim=8", "device=cpu", "compile=false", "training.progress=false"]
    return {"rows": rows, "images": images, "overrides": overrides}


def _brute_force(rows, split, score):
    """Realistic filtered tail ranks, per evaluated triple, from the raw string rows."""
    mode = {"valid": "val"}.get(split, split)
    pools, known = defaultdict(set), defaultdict(set)
    for h, r, t, m in rows:
        known[(h, r)].add(t)
        if r not in ARTIST_TO_ARTIST or m == mode:
            pools[r].add(t)
    out = []
    for h, r, t, m in rows:
        if m != mode or r in EXCLUDED:
            continue
        counted = pools[r] - known[(h, r)]  # the target itself is in known[(h, r)]
        mine = score(h, r, t)
        others = [score(h, r, c) for c in counted]
        greater = sum(s > mine for s in others)
        tied = sum(s == mine for s in others)
        out.append(((h, r, t), 1 + greater + tied / 2))
    return out


def test_graph_pools_and_evaluated_triples(wikiart):
    cfg = load_config(CONFIG, wikiart["overrides"])
    kg, _ = prepare(cfg)
    seen = kg.seen_in_train()
    assert not any(seen[kg.entity_id(f"T{i}")] for i in range(4))  # inductive
    assert "X0" in kg.entities  # an entity with a modality and no triple still gets an id
    # the training-only inverse is in train, and only there
    inv = kg.relation_id("hasCreatedArtwork")
    assert int((kg.train[:, 1] == inv).sum()) == 12
    assert all(int((kg.splits[s][:, 1] == inv).sum()) == 0 for s in ("valid", "test"))

    evaluator = Evaluator(kg, cfg["evaluation"])
    assert evaluator.sides == ("tail",)
    names = lambda ids: {kg.entities[i] for i in ids.nonzero().squeeze(1).tolist()}  # noqa: E731
    test_pool, valid_pool = evaluator.pool("test"), evaluator.pool("valid")
    assert names(test_pool[kg.relation_id("hasStyle")]) == {"S0", "S1", "S2", "S3"}
    assert names(valid_pool[kg.relation_id("hasStyle")]) == {"S0", "S1", "S2", "S3"}
    assert names(test_pool[kg.relation_id("isCreatedByArtist")]) == {"A0", "A1", "A2", "A3"}
    assert names(test_pool[kg.relation_id("isInfluencedBy")]) == {"A6", "A5"}
    assert names(valid_pool[kg.relation_id("isInfluencedBy")]) == {"A4"}
    assert names(test_pool[kg.relation_id("isPupilOf")]) == {"A6"}
    assert not test_pool[:, kg.entity_id("X0")].any()

    evaluated = {
        (kg.entities[h], kg.relations[r], kg.entities[t])
        for h, r, t in evaluator.triples("test").tolist()
    }
    expected = {(h, r, t) for h, r, t, m in wikiart["rows"] if m == "test" and r not in EXCLUDED}
    assert evaluated == expected


def test_unseen_artworks_are_represented_from_their_image(wikiart):
    cfg = load_config(CONFIG, wikiart["overrides"])
    kg, model = prepare(cfg)
    table = model.entity_table()
    t0 = torch.tensor(np.mean(wikiart["images"]["T0"], axis=0))
    # no structural part (unseen), no text, image width = d: the fused vector is the image
    assert torch.allclose(table[kg.entity_id("T0")], t0, atol=1e-6)
    assert torch.allclose(
        table[kg.entity_id("T1")], torch.tensor(wikiart["images"]["T1"]), atol=1e-6
    )


@pytest.mark.parametrize("split", ["valid", "test"])
def test_ranks_match_a_brute_force_protocol(wikiart, split):
    cfg = load_config(CONFIG, wikiart["overrides"])
    kg, model = prepare(cfg)
    evaluator = Evaluator(kg, cfg["evaluation"])

    # 1. the model itself (continuous scores)
    table = model.entity_table()
    with torch.no_grad():
        full = {
            (h, r): model.score_against(
                "tail",
                torch.tensor([kg.entity_id(h)]),
                torch.tensor([kg.relation_id(r)]),
                table=table,
            )[0]
            for h, r, _, _ in wikiart["rows"]
        }
    expected = _brute_force(
        wikiart["rows"], split, lambda h, r, c: float(full[(h, r)][kg.entity_id(c)])
    )
    result = evaluator.evaluate(model, split)
    assert "head" not in result and result["tail"]["count"] == len(expected)
    mrr = float(np.mean([1 / rank for _, rank in expected]))
    assert result["both"]["mrr"] == pytest.approx(mrr, abs=1e-9)
    for relation in {r for (_, r, _), _ in expected}:
        ranks = [rank for (_, r, _), rank in expected if r == relation]
        assert result["per_relation"][relation]["mrr"] == pytest.approx(
            float(np.mean([1 / x for x in ranks])), abs=1e-9
        )
    assert not set(result["per_relation"]) & EXCLUDED

    # 2. a scorer with many ties: realistic ranks (mean of optimistic and pessimistic)
    def tied(side, anchor, relation):
        return (torch.arange(kg.num_entities) % 3).float().expand(len(anchor), -1)

    expected = _brute_force(wikiart["rows"], split, lambda h, r, c: kg.entity_id(c) % 3)
    ranks = evaluator.rank(tied, split)["tail"]
    assert ranks.tolist() == pytest.approx([rank for _, rank in expected])


def test_shipped_v2_config_trains_end_to_end(wikiart, tmp_path):
    cfg = load_config(CONFIG, [*wikiart["overrides"], "training.epochs=2", "training.batch_size=8"])
    metrics = train(cfg, tmp_path / "run")
    test = metrics["test"]
    assert test["tail"]["count"] == sum(
        1 for _, r, _, m in wikiart["rows"] if m == "test" and r not in EXCLUDED
    )
    assert 0 < test["both"]["mrr"] <= 1
