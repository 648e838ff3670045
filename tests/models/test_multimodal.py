"""The multimodal (VL-KGE) entity representation: fusion under availability masks, inductive
masking, paper compatibility, structural dropout, training end to end."""

import logging
import math

import pytest
import torch
from fused_toy import (
    IMAGE,
    TEST,
    TRAIN,
    A,
    B,
    C,
    D,
    E,
    F,
    G,
    H,
    feats_for_model,
    features_for,
    fused,
    model_cfg,
    parts,
    real_part,
    toy_graph,
)

from vlkge.config import load_config
from vlkge.errors import ConfigError, VlkgeError
from vlkge.models import build_model
from vlkge.models.features import load_features
from vlkge.training.trainer import Trainer


# --- the fused representation ---------------------------------------------------------------
def test_average_fusion_with_inductive_masking():
    rep, feats = fused()
    s, v, t = parts(rep, feats)
    expected = torch.stack(
        [
            (s[A] + v[A] + t[A]) / 3,
            (s[B] + v[B]) / 2,
            (s[C] + t[C]) / 2,
            s[D],
            v[E],  # unseen, image only: the image alone, not v/2
            t[F],
            (v[G] + t[G]) / 2,
            torch.zeros(2),  # no part at all
        ]
    )
    assert torch.allclose(rep(), expected)
    assert rep.width == 2 and rep.num_empty == 1


def test_paper_compat_counts_the_masked_structural_part():
    rep, feats = fused(paper_compat=True)
    s, v, t = parts(rep, feats)
    out = rep()
    assert torch.allclose(out[E], v[E] / 2)
    assert torch.allclose(out[G], (v[G] + t[G]) / 3)
    assert torch.allclose(out[A], (s[A] + v[A] + t[A]) / 3)  # seen entities unchanged
    assert not out[H].any()


def test_forward_computes_requested_rows_in_their_shape():
    rep, _ = fused(fusion="weighted")
    index = torch.tensor([[E, A], [H, G]])
    out = rep(index)
    assert out.shape == (2, 2, rep.width)
    assert torch.allclose(out, rep()[index])


def test_weighted_equals_average_at_init_then_learns():
    avg, _ = fused()
    torch.manual_seed(0)
    weighted, _ = fused(fusion="weighted")
    weighted.structural.weight.data.copy_(avg.structural.weight.data)
    assert torch.allclose(weighted(), avg())
    weighted().square().sum().backward()
    assert weighted.fusion_logits.grad.abs().sum() > 0


def test_concat_zero_fills_and_sizes_relations():
    rep, feats = fused(fusion="concat")
    s, v, t = parts(rep, feats)
    out = rep()
    assert rep.width == 6
    assert torch.allclose(out[A], torch.cat([s[A], v[A], t[A]]))
    assert torch.allclose(out[B], torch.cat([s[B], v[B], torch.zeros(2)]))
    assert torch.allclose(out[E], torch.cat([torch.zeros(2), v[E], torch.zeros(2)]))
    kg = toy_graph()
    for backbone, rel_width, ent_width in (
        ("transe", 9, 9),  # dim 3, three parts
        ("distmult", 9, 9),
        ("complex", 18, 18),
        ("rotate", 9, 18),
    ):
        model = build_model(model_cfg(backbone, fusion="concat"), kg, feats_for_model(kg))
        assert model.relations.width == rel_width
        assert model.entities.width == ent_width


def test_structural_part_optional_and_normalised_parts():
    rep, feats = fused(structural=False, normalize_parts=True)
    _, v, t = parts(rep, feats)
    unit = torch.nn.functional.normalize
    out = rep()
    assert torch.allclose(out[A], (unit(v[A], dim=0) + unit(t[A], dim=0)) / 2)
    assert not out[D].any()  # structural only, and structural disabled: empty
    assert rep.num_empty == 2  # d and h
    assert not hasattr(rep, "structural")


def test_entities_without_any_part_are_zero_and_reported(caplog):
    with caplog.at_level(logging.WARNING):
        rep, _ = fused()
    assert "1 of 8 entities have no structural part" in caplog.text
    assert not rep()[H].any()


def test_projections_shared_or_separate():
    kg = toy_graph()
    feats = features_for(kg.entities, image_width=3, text_width=3)
    rep, _ = fused(dim=4, features=feats, shared_projection=True)
    assert rep.projections["image"] is rep.projections["text"]
    rep, _ = fused(dim=4, features=feats)
    assert rep.projections["image"] is not rep.projections["text"]
    with pytest.raises(ConfigError, match="equal feature widths"):
        fused(dim=4, features=features_for(kg.entities, 3, 5), shared_projection=True)


def test_missing_features_and_cache_are_clear_errors(tmp_path):
    kg = toy_graph()
    with pytest.raises(VlkgeError, match="no features were given"):
        build_model(model_cfg("distmult"), kg)
    feats = feats_for_model(kg)
    with pytest.raises(VlkgeError, match="no text features"):
        build_model(model_cfg("distmult"), kg, {"image": feats["image"]})
    with pytest.raises(VlkgeError, match="features.cache_dir"):
        load_features(None, kg, ["image"])
    with pytest.raises(VlkgeError, match="not found"):
        load_features(tmp_path / "absent", kg, ["image"])
    assert load_features(None, kg, []) == {}
    bad = {"image": (torch.zeros(3, 4), torch.zeros(3, dtype=torch.bool))}
    with pytest.raises(VlkgeError, match="one row per entity"):
        build_model(model_cfg("distmult", modalities="[image]"), kg, bad)


def test_config_keys_are_validated():
    with pytest.raises(ConfigError, match="model.modalities"):
        load_config(overrides=["model.modalities=[audio]"])
    with pytest.raises(ConfigError, match="model.fusion"):
        load_config(overrides=["model.fusion=sum"])
    with pytest.raises(ConfigError, match="structural"):
        load_config(overrides=["model.structural=false"])
    with pytest.raises(ConfigError, match="twice"):
        load_config(overrides=["model.modalities=[text, text]"])
    cfg = load_config(overrides=["model.modalities=[image]", "features.cache_dir=/x"])
    assert cfg["features"]["cache_dir"] == "/x"


def test_structural_model_unchanged_without_modalities():
    kg = toy_graph()
    model = build_model(load_config(overrides=["model.dim=3"])["model"], kg)
    assert type(model.entities).__name__ == "Embedding"


# --- training end to end ------------------------------------------------------------------------
@pytest.mark.parametrize("fusion", ["average", "concat", "weighted"])
@pytest.mark.parametrize("backbone", ["transe", "distmult", "complex", "rotate"])
def test_every_backbone_trains_with_fused_features(backbone, fusion, tmp_path):
    torch.manual_seed(0)
    cfg = load_config(
        overrides=[
            f"model.backbone={backbone}",
            "model.dim=4",
            "model.gamma=2.0",
            f"model.fusion={fusion}",
            "model.modalities=[image, text]",
            "training.batch_size=8",
            "training.negatives.num=3",
            "training.progress=false",
            "training.regime=1vsall",
            "training.loss=ce",
            "training.optimizer.name=adam",
            "training.optimizer.lr=0.05",
        ]
    )
    kg = toy_graph()
    model = build_model(cfg["model"], kg, feats_for_model(kg))
    trainer = Trainer(cfg, kg, model, tmp_path)
    frozen = real_part(model.entities).features.frozen
    before = frozen("image").clone()
    losses = [trainer.train_epoch() for _ in range(25)]
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]
    assert torch.equal(frozen("image"), before)  # frozen
    if backbone in ("complex", "rotate"):
        assert model.entities.imaginary.map.weight.grad is not None


def test_train_run_with_injected_features(tmp_path, make_dataset):
    from vlkge.data.datasets import load_graph
    from vlkge.training.run import train

    folder = make_dataset(tmp_path / "toy", train=TRAIN, valid=TEST[:2], test=TEST[2:])
    cfg = load_config(
        overrides=[
            f"dataset.name={folder}",
            "dataset.setting=inductive",
            "model.backbone=distmult",
            "model.dim=4",
            "model.modalities=[image]",
            "training.epochs=3",
            "training.batch_size=4",
            "training.negatives.num=2",
            "training.progress=false",
        ]
    )
    kg = load_graph(cfg["dataset"])
    metrics = train(cfg, tmp_path / "run", features=feats_for_model(kg))
    assert 0 < metrics["test"]["both"]["mrr"] <= 1


def test_run_reads_the_feature_cache_and_reloads(tmp_path, make_dataset):
    import pickle

    pytest.importorskip("vlkge.encoders.cache")
    from vlkge.encoders.cache import FeatureCache
    from vlkge.encoders.precomputed import read_features
    from vlkge.training.final import evaluate_run
    from vlkge.training.run import train
    from vlkge.training.setup import load_run

    folder = make_dataset(tmp_path / "toy", train=TRAIN, valid=TEST[:2], test=TEST[2:])
    gen = torch.Generator().manual_seed(0)
    vectors = {e: torch.randn(5, generator=gen).numpy() for e in sorted(IMAGE)}
    (tmp_path / "image.pkl").write_bytes(pickle.dumps(vectors))
    cache = FeatureCache(tmp_path / "cache")
    cache.import_features("image", read_features(tmp_path / "image.pkl"))
    overrides = [
        f"dataset.name={folder}",
        "dataset.setting=inductive",
        "model.backbone=complex",
        "model.dim=4",
        "model.modalities=[image]",
        f"features.cache_dir={tmp_path / 'cache'}",
        "training.epochs=2",
        "training.batch_size=4",
        "training.negatives.num=2",
        "training.progress=false",
    ]
    metrics = train(load_config(overrides=overrides), tmp_path / "run")
    cfg, kg, model = load_run(tmp_path / "run")
    real = real_part(model.entities)
    image, mask = real.features.frozen("image"), real.has("image")
    assert [kg.entities[i] for i in mask.nonzero().squeeze(1).tolist()] == sorted(IMAGE)
    assert torch.allclose(image[kg.entity_id("e")], torch.from_numpy(vectors["e"]))
    again = evaluate_run(cfg, kg, model, ["test"])
    assert again["test"]["both"]["mrr"] == pytest.approx(metrics["test"]["both"]["mrr"])


# --- structural dropout -------------------------------------------------------------------------
def test_structural_dropout_masks_seen_entities_like_unseen_ones_in_training_only():
    torch.manual_seed(0)
    rep, features = fused(structural_dropout=0.5)
    s, v, t = parts(rep, features)
    proj_v, proj_t = rep.projections["image"](v), rep.projections["text"](t)
    # a (seen, image + text): with its structural part masked it is the mean of v and t
    masked_a = (proj_v[A] + proj_t[A]) / 2
    full_a = (s[A] + proj_v[A] + proj_t[A]) / 3
    rep.train()
    rows = torch.stack([rep()[A] for _ in range(40)])
    is_masked = torch.isclose(rows, masked_a, atol=1e-6).all(1)
    is_full = torch.isclose(rows, full_a, atol=1e-6).all(1)
    assert (is_masked | is_full).all() and 5 < int(is_masked.sum()) < 35
    # d (seen, no modality) always keeps its structural part
    assert torch.allclose(rep()[D], s[D]) and torch.allclose(rep()[D], s[D])
    rep.eval()
    assert torch.allclose(rep()[A], full_a, atol=1e-6)


def test_structural_dropout_is_validated():
    with pytest.raises(ConfigError, match="structural_dropout"):
        load_config(overrides=["model.structural_dropout=1.0"])
