"""Checkpoints written before the entity representation was split (one module held the
feature tables, the fused parts and the imaginary part) still load, into the same vectors."""

import pytest
import torch
from fused_toy import feats_for_model, model_cfg, toy_graph

from vlkge.models import build_model
from vlkge.models.legacy import rename_keys

#: new key prefix -> the prefix older checkpoints used (most specific first)
OLD_PREFIXES = {
    "entities.real.features.": "entities.",
    "entities.real.": "entities.",
    "entities.features.": "entities.",
    "entities.imaginary.free.": "entities.imag.",
    "entities.imaginary.map.": "entities.imag_map.",
    "entities.imaginary.gate": "entities.gate",
}


def old_layout(state: dict) -> dict:
    out = {}
    for key, value in state.items():
        new = next((p for p in OLD_PREFIXES if key.startswith(p)), None)
        out[key if new is None else OLD_PREFIXES[new] + key[len(new) :]] = value
    return out


def test_rename_keys_moves_only_keys_under_the_prefix():
    state = {"a.x": 1, "a.y.z": 2, "b.x": 3}
    rename_keys(state, "a.", lambda key: "moved." + key if key.startswith("y") else key)
    assert state == {"a.x": 1, "a.moved.y.z": 2, "b.x": 3}


@pytest.mark.parametrize("backbone", ["distmult", "complex", "rotate"])
def test_an_old_checkpoint_loads_into_the_same_vectors(backbone):
    kg = toy_graph()
    cfg = model_cfg(backbone, fusion="weighted")
    features_cfg = {"preprocess": "center", "width": None, "normalize": True}
    torch.manual_seed(0)
    trained = build_model(cfg, kg, feats_for_model(kg), features_cfg=features_cfg)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(torch.randn_like(p))
    old = old_layout(trained.state_dict())
    assert "entities.fingerprint" in old and "entities.transforms.image.mean" in old
    if backbone != "distmult":
        assert {"entities.gate", "entities.imag.weight", "entities.imag_map.weight"} <= set(old)
    torch.manual_seed(1)
    loaded = build_model(cfg, kg, feats_for_model(kg), features_cfg=features_cfg)
    loaded.load_state_dict(old)
    assert torch.equal(loaded.entity_table(), trained.entity_table())
