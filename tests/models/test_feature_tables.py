"""The features the fused representation reads: frozen buffers outside parameters and
checkpoints, a fingerprint that refuses other features, fine-tuned towers replacing a table,
the fitted transform re-applied after a checkpoint brings it."""

import pytest
import torch
from fused_toy import feats_for_model, features_for, model_cfg, toy_graph

from vlkge.errors import VlkgeError
from vlkge.models import build_model
from vlkge.models.feature_tables import FeatureTables
from vlkge.models.multimodal import FusedEntityRepresentation


def test_frozen_features_are_buffers_outside_parameters_and_checkpoints():
    kg = toy_graph()
    feats = feats_for_model(kg)
    model = build_model(model_cfg("complex"), kg, feats)
    buffers = dict(model.named_buffers())
    image, text = "entities.real.features.frozen_image", "entities.real.features.frozen_text"
    assert image in buffers and text in buffers
    param_ptrs = {p.data_ptr() for p in model.parameters()}
    assert buffers[image].data_ptr() not in param_ptrs
    assert all(not b.requires_grad for b in buffers.values())
    state = model.state_dict()
    assert image not in state and "entities.real.features.fingerprint" in state
    # the same features load; other features are refused
    build_model(model_cfg("complex"), kg, feats).load_state_dict(state)
    other = feats_for_model(kg, seed=1)
    with pytest.raises(VlkgeError, match="other modal features"):
        build_model(model_cfg("complex"), kg, other).load_state_dict(state)


class Tower(torch.nn.Module):
    """A stand-in fine-tuned tower: a learnable table."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.nn.Parameter(table.clone())

    def forward(self):
        return self.table * 2


def test_a_tower_replaces_its_frozen_table():
    features = features_for(toy_graph().entities)
    tables = FeatureTables(features, {"text": Tower(features["text"][0])})
    rows = torch.tensor([2, 0])
    assert torch.equal(tables.table("text", rows), features["text"][0][rows] * 2)
    assert torch.equal(tables.table("image"), features["image"][0])
    assert torch.equal(tables.frozen("text"), features["text"][0])


def test_checkpoint_brings_its_transform_and_the_tables_follow():
    kg = toy_graph()
    features = features_for(kg.entities, 4, 4)
    trained = FusedEntityRepresentation(
        features, 3, kg.seen_in_train(), preprocess="pca", preprocess_width=2
    )
    other = FusedEntityRepresentation(
        features, 3, kg.seen_in_train(), preprocess="pca", preprocess_width=2
    )
    with torch.no_grad():  # as if the SVD had come out with other signs on another machine
        other.features.transforms["text"].basis.neg_()
        other.features.frozen("text").copy_(other.features.transforms["text"](*features["text"]))
    other.load_state_dict(trained.state_dict())
    torch.testing.assert_close(other.features.frozen("text"), trained.features.frozen("text"))
    torch.testing.assert_close(other(), trained())


@pytest.mark.parametrize("preprocess", ["none", "center", "pca"])
def test_float16_tables_stay_float16_and_give_float32_rows(preprocess):
    kg = toy_graph()
    features = features_for(kg.entities, 4, 4)
    half = {m: (table.half(), mask) for m, (table, mask) in features.items()}
    rounded = {m: (table.float(), mask) for m, (table, mask) in half.items()}  # the reference
    built = []
    for given in (half, rounded):
        torch.manual_seed(0)
        built.append(FusedEntityRepresentation(given, 3, kg.seen_in_train(), preprocess=preprocess))
    model, reference = built
    rows = torch.tensor([3, 0, 3])
    for name in ("image", "text"):
        assert model.features.frozen(name).dtype == torch.float16
        got, want = model.features.table(name, rows), reference.features.table(name, rows)
        assert got.dtype == torch.float32
        # float16 storage of the transformed rows: fp16 rounding, exact without a transform
        torch.testing.assert_close(got, want, rtol=2**-10, atol=1e-6 if preprocess != "none" else 0)
    torch.testing.assert_close(model(rows), reference(rows), rtol=1e-3, atol=1e-6)
    if preprocess == "none":
        assert model.features.frozen("text").data_ptr() == half["text"][0].data_ptr()
