"""The imaginary part of complex backbones over the fused representation: free rows, the gated
image path, zero otherwise, its initialisation under paper compatibility."""

import torch
from fused_toy import A, B, C, D, E, F, G, H, complex_fused, feats_for_model, model_cfg, toy_graph

from vlkge.models import build_model
from vlkge.models.imaginary import GATE_INIT, ComplexEntities
from vlkge.models.multimodal import FusedEntityRepresentation


def test_imaginary_part_rules():
    rep, _ = complex_fused()
    out = rep()
    re, im = out[:, :2], out[:, 2:]
    assert rep.width == 4
    assert torch.allclose(re, rep.real())
    # free rows: seen entities (a, b, c, d) and textual entities (f, g), each its own row
    free = [A, B, C, D, F, G]
    rows = rep.imaginary.free_row[free]
    assert (rows >= 0).all() and len(set(rows.tolist())) == len(free)
    assert torch.allclose(im[free], rep.imaginary.free.weight[rows])
    # image only, unseen: tanh(g) P Re(e)
    expected = torch.tanh(torch.tensor(GATE_INIT)) * (rep.imaginary.map.weight @ re[E])
    assert torch.allclose(im[E], expected.detach(), atol=1e-6)
    assert im[E].abs().sum() > 0
    # neither: zero
    assert not im[H].any()


def test_image_path_learns_by_default_and_not_under_paper_compat():
    for compat, learns in ((False, True), (True, False)):
        rep, _ = complex_fused(paper_compat=compat)
        rep(torch.tensor([E, A])).square().sum().backward()
        p_grad, g_grad = rep.imaginary.map.weight.grad, rep.imaginary.gate.grad
        assert (p_grad.abs().sum() > 0) == learns
        assert (g_grad.abs() > 0) == learns
        if compat:
            assert not rep()[E, 2:].any()  # Im(artwork) stays 0: the reference's defect


def test_structural_off_gives_image_only_seen_entities_the_gated_path():
    rep, _ = complex_fused(structural=False)
    imaginary = rep.imaginary
    assert bool(imaginary.gated[B]) and imaginary.free_row[B] == -1  # b is seen but image only
    assert imaginary.free_row[C] >= 0  # textual


def test_the_factory_composes_it_for_complex_backbones_only():
    kg = toy_graph()
    for backbone, composed in (("complex", True), ("rotate", True), ("distmult", False)):
        entities = build_model(model_cfg(backbone), kg, feats_for_model(kg)).entities
        assert isinstance(entities, ComplexEntities) is composed
        real = entities.real if composed else entities
        assert isinstance(real, FusedEntityRepresentation)
        assert entities.width == (2 if composed else 1) * real.width
