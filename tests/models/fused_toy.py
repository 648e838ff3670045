"""A toy inductive graph with image and text features, shared by the tests of the multimodal
representation, its feature tables and its imaginary part."""

from __future__ import annotations

import torch

from vlkge.config import load_config
from vlkge.data.graph import KnowledgeGraph
from vlkge.data.triples import LabeledTriples
from vlkge.models.imaginary import ComplexEntities
from vlkge.models.multimodal import FusedEntityRepresentation

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


def complex_fused(**kwargs):
    """``[Re ; Im]`` over :func:`fused` (``paper_compat`` goes to both parts)."""
    real, features = fused(**kwargs)
    return ComplexEntities.around(real, kwargs.get("paper_compat", False)), features


def real_part(rep):
    """The fused representation of ``rep`` (itself, or the real part of a complex one)."""
    return rep.real if isinstance(rep, ComplexEntities) else rep


def parts(rep, features):
    s = torch.zeros(8, rep.dim)
    if rep.has_structural:
        s[:4] = rep.structural.weight.detach()  # a..d are the seen entities, rows 0..3
    return s, features["image"][0], features["text"][0]


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
