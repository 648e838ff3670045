"""Build a model from the resolved configuration (open_clip-style small factory)."""

from __future__ import annotations

import logging
import math

import torch

from vlkge.data.graph import KnowledgeGraph
from vlkge.errors import ConfigError, VlkgeError
from vlkge.models.backbones import BACKBONES, RotatE, TransE
from vlkge.models.features import Features
from vlkge.models.model import KGEModel
from vlkge.models.multimodal import FusedEntityRepresentation
from vlkge.models.representations import Embedding, Representation
from vlkge.precision import model_device

log = logging.getLogger(__name__)

#: a median initial score above this means gamma dwarfs the initial distances: positives start
#: where the sigmoid of the logistic / bce losses is flat (sigmoid(-4.6) = 1%)
SATURATED_SCORE = math.log(99)


def build_interaction(cfg: dict):
    name = cfg["backbone"]
    cls = BACKBONES[name]
    if cls is TransE:
        return TransE(gamma=cfg["gamma"])
    if cls is RotatE:
        return RotatE(gamma=cfg["gamma"], distance=cfg["rotate_distance"])
    return cls()


def build_entities(
    model_cfg: dict,
    kg: KnowledgeGraph,
    entity_parts: int,
    features: Features | None = None,
    paper_compat: bool = False,
    towers: dict | None = None,
    features_cfg: dict | None = None,
) -> Representation:
    """The entity representation: a structural table, or the fused multimodal one when
    ``model.modalities`` is non-empty (then ``features`` must hold those modalities)."""
    dim = model_cfg["dim"]
    modalities = list(model_cfg.get("modalities") or [])
    structural = model_cfg.get("structural", True)
    if not modalities:
        if not structural:
            raise ConfigError("model.structural: false needs at least one of model.modalities")
        return Embedding(kg.num_entities, entity_parts * dim)
    if features is None:
        raise VlkgeError(
            f"model.modalities is {modalities} but no features were given "
            "(set features.cache_dir to a cache written by `vlkge encode`)"
        )
    missing = [m for m in modalities if m not in features]
    if missing:
        raise VlkgeError(f"no {', '.join(missing)} features for model.modalities {modalities}")
    return FusedEntityRepresentation(
        {m: features[m] for m in modalities},
        dim,
        kg.seen_in_train(),
        structural=structural,
        fusion=model_cfg.get("fusion", "average"),
        normalize_parts=model_cfg.get("normalize_parts", False),
        shared_projection=model_cfg.get("shared_projection", False),
        adapter_rank=model_cfg.get("adapter", 0),
        entity_parts=entity_parts,
        paper_compat=paper_compat,
        towers=towers,
        structural_dropout=model_cfg.get("structural_dropout", 0.0),
        neighbours=model_cfg.get("neighbours", 0),
        neighbour_temperature=model_cfg.get("neighbour_temperature", 0.05),
        dropout=model_cfg.get("dropout", 0.0),
        **_preprocessing(features_cfg),
    )


def _preprocessing(features_cfg: dict | None) -> dict:
    """The ``features`` section's preprocessing keys as representation arguments (none
    without a section: the representation's own defaults, no preprocessing)."""
    if features_cfg is None:
        return {}
    return {
        "preprocess": features_cfg["preprocess"],
        "preprocess_width": features_cfg["width"],
        "normalize_features": features_cfg["normalize"],
    }


def build_model(
    model_cfg: dict,
    kg: KnowledgeGraph,
    features: Features | None = None,
    paper_compat: bool = False,
    towers: dict | None = None,
    features_cfg: dict | None = None,
) -> KGEModel:
    """A model for ``kg`` from the ``model`` section of a config.

    ``features`` (``{modality: (FloatTensor[E, w], BoolTensor[E])}``) feed the multimodal
    representation when ``model.modalities`` is set; ``paper_compat`` (``compat.paper``) turns
    on the reference implementation's fusion and initialisation (SPEC 6.3, 6.4); ``towers``
    are fine-tuned encoder towers (:func:`vlkge.encoders.tuning.build_towers`).
    """
    interaction = build_interaction(model_cfg)
    entities = build_entities(
        model_cfg, kg, interaction.entity_parts, features, paper_compat, towers, features_cfg
    )
    # relations match the width of one part of an entity vector (k * d for concat fusion)
    width = getattr(entities, "base_width", model_cfg["dim"])
    num_relations = kg.num_relations * (2 if model_cfg["reciprocal"] else 1)
    relations = Embedding(
        num_relations, interaction.relation_width(width), init=interaction.init_relations
    )
    return KGEModel(entities, relations, interaction, kg.num_relations, model_cfg["reciprocal"])


@torch.no_grad()
def warn_large_margin(
    model: KGEModel, triples: torch.Tensor, loss: str, sample: int = 1024
) -> bool:
    """Warn (once, when training starts) that ``model.gamma`` is large for the distances the
    model starts from: the median initial score of (up to ``sample`` evenly spaced) training
    ``triples`` is above :data:`SATURATED_SCORE`, so the loss barely pulls true triples closer
    (TransE or RotatE at a small dimension with the default 12). The ``ce`` loss, a softmax,
    is blind to the margin. Draws nothing from the random generators; returns whether it
    warned."""
    gamma = getattr(model.interaction, "gamma", None)
    if not gamma or loss == "ce" or len(triples) == 0:
        return False
    rows = torch.linspace(0, len(triples) - 1, min(sample, len(triples))).long()
    training = model.training
    model.eval()  # no dropout of structural parts: no random draw, the table as it starts
    try:
        score = model.score_triples(triples[rows].to(model_device(model))).float().median()
    finally:
        model.train(training)
    if score.item() <= SATURATED_SCORE:
        return False
    log.warning(
        "model.gamma %g is large for the initial distances of the training triples (median "
        "%.3g): they start with scores near %.3g, where the loss hardly pulls true triples "
        "closer, and the model may not learn; lower model.gamma toward that distance (or "
        "raise model.dim)",
        gamma,
        gamma - score.item(),
        score.item(),
    )
    return True
