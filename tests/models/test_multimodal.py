"""The multimodal (VL-KGE) entity representation: projections, fusion under availability masks,
inductive masking, the complex-valued extension, paper compatibility, training end to end."""

import logging
import math

import pytest
import torch

from vlkge.config import load_config
from vlkge.data.graph import KnowledgeGraph
from vlkge.data.triples import LabeledTriples
from vlkge.errors import ConfigError, VlkgeError
from vlkge.models import build_model
from vlkge.models.features import load_features
from vlkge.models.fusion import Projection, fuse
from vlkge.models.multimodal import GATE_INIT, FusedEntityRepresentation
from vlkge.training.trainer import Trainer

# a..d occur in training; e..h only in test (inductive)
TRAIN = [("a", "r", "b"), ("b", "r", "c"), ("c", "s", "a"), ("d", "s", "b"), ("a", "s", "d")]
TEST = [("e", "r", "a"), ("f", "s", "b"), ("g", "r", "c"), ("h", "r", "a")]
# which entity has which modality
IMAGE = {"a", "b", "e", "g"}
TEXT = {"a", "c", "f", "g"}
A, B, C, D, E, F, G, H = range(8)


def toy_graph() -> KnowledgeGraph:
    splits = {
        "train": LabeledTriples("train", TRAIN, list(range(1, len(TRAIN) + 1))),
        "test": LabeledTriples("test", TEST, list(range(1, len(TEST) + 1))),
    }
    kg = KnowledgeGraph.from_labeled("toy", splits, inductive=True)
    assert kg.entities == list("abcdefgh")
    return kg


def features_for(entities, image_width=2, text_width=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, width, has in (("image", image_width, IMAGE), ("text", text_width, TEXT)):
        mask = torch.tensor([e in has for e in entities])
        table = torch.randn(len(entities), width, generator=gen) * mask.unsqueeze(1)
        out[name] = (table, mask)
    return out


def fused(dim=2, features=None, **kwargs):
    kg = toy_graph()
    features = features_for(kg.entities) if features is None else features
    return FusedEntityRepresentation(features, dim, kg.seen_in_train(), **kwargs), features


def parts(rep, features):
    s = torch.zeros(8, rep.dim)
    if rep.has_structural:
        s[:4] = rep.structural.weight.detach()  # a..d are the seen entities, rows 0..3
    return s, features["image"][0], features["text"][0]


# --- projection -----------------------------------------------------------------------------
def test_projection_is_identity_when_widths_match():
    x = torch.randn(5, 4)
    proj = Projection(4, 4)
    assert proj.identity and list(proj.parameters()) == []
    assert proj(x) is x


def test_projection_maps_other_widths_without_bias():
    proj = Projection(3, 4)
    assert proj.linear.bias is None and proj.linear.weight.shape == (4, 3)
    bound = math.sqrt(6 / 7)  # Xavier-uniform
    assert proj.linear.weight.abs().max() <= bound
    x = torch.randn(5, 3)
    assert torch.allclose(proj(x), x @ proj.linear.weight.T)


def test_adapter_starts_as_identity_and_learns():
    proj = Projection(4, 4, adapter_rank=2)
    x = torch.randn(5, 4)
    assert torch.allclose(proj(x), x)
    proj(x).square().sum().backward()
    assert proj.up.weight.grad.abs().sum() > 0


# --- fusion operators -------------------------------------------------------------------------
def test_fuse_average_leaves_missing_parts_out():
    p = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])
    present = torch.tensor([[True, True, False]])
    assert torch.allclose(
        fuse(p.unbind(1), present, present, "average"), torch.tensor([[2.0, 3.0]])
    )
    # counted but not present (paper compatibility): a zero share in the average
    counted = torch.tensor([[True, True, True]])
    assert torch.allclose(
        fuse(p.unbind(1), present, counted, "average"), torch.tensor([[4 / 3, 2.0]])
    )


def test_fuse_concat_zero_fills():
    p = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    present = torch.tensor([[False, True]])
    assert torch.equal(
        fuse(p.unbind(1), present, present, "concat"), torch.tensor([[0.0, 0.0, 3.0, 4.0]])
    )


def test_fuse_weighted_renormalises_over_present_parts():
    p = torch.tensor([[[1.0], [2.0], [4.0]], [[1.0], [2.0], [4.0]]])
    present = torch.tensor([[True, True, True], [True, True, False]])
    ones = torch.ones(3)
    assert torch.allclose(
        fuse(p.unbind(1), present, present, "weighted", ones),
        fuse(p.unbind(1), present, present, "average"),
    )
    logits = torch.tensor([0.0, math.log(2.0), 0.0])
    out = fuse(p.unbind(1), present, present, "weighted", logits)
    assert torch.allclose(out, torch.tensor([[1 / 4 + 1 + 1], [1 / 3 + 4 / 3]]))


def test_fuse_nothing_present_is_zero_with_finite_gradient():
    p = torch.ones(1, 2, 3)
    none = torch.zeros(1, 2, dtype=torch.bool)
    logits = torch.ones(2, requires_grad=True)
    for fusion in ("average", "concat", "weighted"):
        out = fuse(p.unbind(1), none, none, fusion, logits)
        assert not out.any()
    fuse(p.unbind(1), none, none, "weighted", logits).sum().backward()
    assert torch.isfinite(logits.grad).all()


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


# --- the complex-valued extension -----------------------------------------------------------
def test_imaginary_part_rules():
    rep, _ = fused(entity_parts=2)
    out = rep()
    re, im = out[:, :2], out[:, 2:]
    assert rep.width == 4
    assert torch.allclose(re, rep.real())
    # free rows: seen entities (a, b, c, d) and textual entities (f, g), each its own row
    free = [A, B, C, D, F, G]
    rows = rep.imag_row[free]
    assert (rows >= 0).all() and len(set(rows.tolist())) == len(free)
    assert torch.allclose(im[free], rep.imag.weight[rows])
    # image only, unseen: tanh(g) P Re(e)
    expected = torch.tanh(torch.tensor(GATE_INIT)) * (rep.imag_map.weight @ re[E])
    assert torch.allclose(im[E], expected.detach(), atol=1e-6)
    assert im[E].abs().sum() > 0
    # neither: zero
    assert not im[H].any()


def test_image_path_learns_by_default_and_not_under_paper_compat():
    for compat, learns in ((False, True), (True, False)):
        rep, _ = fused(entity_parts=2, paper_compat=compat)
        rep(torch.tensor([E, A])).square().sum().backward()
        p_grad, g_grad = rep.imag_map.weight.grad, rep.gate.grad
        assert (p_grad.abs().sum() > 0) == learns
        assert (g_grad.abs() > 0) == learns
        if compat:
            assert not rep()[E, 2:].any()  # Im(artwork) stays 0: the reference's defect


def test_structural_off_gives_image_only_seen_entities_the_gated_path():
    rep, _ = fused(entity_parts=2, structural=False)
    assert bool(rep.gated[B]) and rep.imag_row[B] == -1  # b is seen but image only
    assert rep.imag_row[C] >= 0  # textual


# --- frozen features, checkpoints -----------------------------------------------------------
def test_frozen_features_are_buffers_outside_parameters_and_checkpoints():
    kg = toy_graph()
    feats = feats_for_model(kg)
    model = build_model(model_cfg("complex"), kg, feats)
    buffers = dict(model.named_buffers())
    assert "entities.feature_image" in buffers and "entities.feature_text" in buffers
    param_ptrs = {p.data_ptr() for p in model.parameters()}
    assert buffers["entities.feature_image"].data_ptr() not in param_ptrs
    assert all(not b.requires_grad for b in buffers.values())
    state = model.state_dict()
    assert "entities.feature_image" not in state and "entities.fingerprint" in state
    # the same features load; other features are refused
    build_model(model_cfg("complex"), kg, feats).load_state_dict(state)
    other = feats_for_model(kg, seed=1)
    with pytest.raises(VlkgeError, match="other modal features"):
        build_model(model_cfg("complex"), kg, other).load_state_dict(state)


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
def model_cfg(backbone, fusion="average", modalities="[image, text]", dim=3):
    return load_config(
        overrides=[
            f"model.backbone={backbone}",
            f"model.dim={dim}",
            f"model.fusion={fusion}",
            f"model.modalities={modalities}",
        ]
    )["model"]


def feats_for_model(kg, seed=0):
    return features_for(kg.entities, image_width=5, text_width=3, seed=seed)


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
    before = model.entities.feature_image.clone()
    losses = [trainer.train_epoch() for _ in range(25)]
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0]
    assert torch.equal(model.entities.feature_image, before)  # frozen
    if backbone in ("complex", "rotate"):
        assert model.entities.imag_map.weight.grad is not None


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
    from vlkge.training.run import evaluate_run, load_run, train

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
    image, mask = model.entities.feature_image, model.entities.present[:, 1]
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
