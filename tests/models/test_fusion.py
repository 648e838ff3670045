"""Building blocks of the fused representation: projections (identity, bias-free, adapter) and
fusion under availability masks (average, concat, weighted)."""

import math

import torch

from vlkge.models.fusion import Projection, fuse


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
