"""Feature preprocessing (centering, PCA, whitening, L2) against independent numpy
computations, and inside the fused representation."""

import numpy as np
import pytest
import torch
from fused_toy import features_for, fused, toy_graph

from vlkge.config import load_config
from vlkge.errors import ConfigError
from vlkge.models.preprocess import FeatureTransform


def anisotropic(n=300, width=8, seed=0):
    """Rows with a large shared offset and unequal variances, some rows missing."""
    gen = np.random.default_rng(seed)
    table = gen.normal(size=(n, width)) * np.linspace(3, 0.5, width) + 5.0
    mask = gen.random(n) > 0.2
    table[~mask] = 0.0
    return torch.tensor(table, dtype=torch.float32), torch.tensor(mask)


def test_center_removes_the_mean_of_present_rows_and_keeps_missing_rows_zero():
    table, mask = anisotropic()
    out = FeatureTransform(table, mask, "center")(table, mask)
    np.testing.assert_allclose(out[mask].mean(0).numpy(), 0.0, atol=1e-5)
    np.testing.assert_allclose(
        out[mask].numpy(), table[mask].numpy() - table[mask].numpy().mean(0), atol=1e-5
    )
    assert not out[~mask].any()


@pytest.mark.parametrize("whiten", [False, True])
def test_pca_and_whitening_match_an_eigendecomposition(whiten):
    table, mask = anisotropic()
    rows = table[mask].double().numpy()
    centered = rows - rows.mean(0)
    values, vectors = np.linalg.eigh(np.cov(centered, rowvar=False))
    order = np.argsort(values)[::-1][:5]
    expected = centered @ vectors[:, order]
    if whiten:
        expected /= np.sqrt(values[order])
    out = FeatureTransform(table, mask, "whiten" if whiten else "pca", width=5)(table[mask])
    assert out.shape == (int(mask.sum()), 5)
    # the same directions up to sign; the transform's signs are canonical
    signs = np.sign((out.numpy() * expected).sum(0))
    np.testing.assert_allclose(out.numpy(), expected * signs, rtol=1e-3, atol=1e-3)
    if whiten:
        np.testing.assert_allclose(out.double().var(0, unbiased=True).numpy(), 1.0, rtol=1e-4)


def test_signs_are_canonical_and_normalize_gives_unit_rows():
    table, mask = anisotropic()
    first = FeatureTransform(table, mask, "pca", width=4, normalize=True)
    flipped = FeatureTransform(-table, mask, "pca", width=4, normalize=True)
    basis = first.basis
    assert (basis.gather(0, basis.abs().argmax(0, keepdim=True)) > 0).all()
    torch.testing.assert_close(first.basis, flipped.basis)
    norms = first(table, mask)[mask].norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


def test_width_beyond_the_data_is_refused():
    table, mask = anisotropic(n=6, width=8)
    with pytest.raises(ValueError, match="features.width 7"):
        FeatureTransform(table, mask, "pca", width=7)


def test_representation_uses_transformed_features_for_graph_and_new_entities():
    rep, features = fused(
        dim=3, features=features_for(toy_graph().entities, 4, 4), preprocess="center"
    )
    rep.eval()
    assert rep.projections["text"].in_width == 4
    # a new entity with entity g's raw features is represented like g without its structure
    g = 6  # unseen in training: text and image, no structural part
    new = rep.represent({"image": features["image"][0][g], "text": features["text"][0][g]})
    torch.testing.assert_close(new[0], rep(torch.tensor([g]))[0])


def test_no_transform_keeps_checkpoints_unchanged():
    rep, _ = fused()
    assert not any("transforms" in key for key in rep.state_dict())


def test_dropout_only_in_training():
    rep, _ = fused(dim=4, dropout=0.5)
    rep.eval()
    torch.testing.assert_close(rep(), rep())
    rep.train()
    torch.manual_seed(0)
    assert not torch.equal(rep(), rep())


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("features.preprocess", "zca", "features.preprocess"),
        ("features.width", 0, "features.width must be positive"),
        ("model.dropout", 1.0, "model.dropout must be below 1"),
    ],
)
def test_config_keys_are_validated(key, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[f"{key}={value}"])
