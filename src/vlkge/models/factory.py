"""Build a model from the resolved configuration (open_clip-style small factory).

The config dict stops here: each ``model`` key is read once (the loader has filled every
default from ``configs/default.yaml``) and passed down as a keyword argument; a backbone names
the keys it takes (:attr:`~vlkge.models.backbones.base.Interaction.config_keys`).
"""

from __future__ import annotations

import logging
import math

import torch

from vlkge.data.graph import KnowledgeGraph
from vlkge.errors import ConfigError, VlkgeError
from vlkge.models.backbones import BACKBONES, Interaction
from vlkge.models.features import Features
from vlkge.models.imaginary import ComplexEntities
from vlkge.models.model import KGEModel
from vlkge.models.multimodal import FusedEntityRepresentation
from vlkge.models.representations import Embedding, Representation
from vlkge.models.sharded import entity_rows, shard_model
from vlkge.precision import model_device

log = logging.getLogger(__name__)

#: a median initial score above this means gamma dwarfs the initial distances: positives start
#: where the sigmoid of the logistic / bce losses is flat (sigmoid(-4.6) = 1%)
SATURATED_SCORE = math.log(99)


def build_interaction(model_cfg: dict) -> Interaction:
    """The backbone ``model.backbone``, given the ``model`` keys it declares
    (:attr:`Interaction.config_keys`)."""
    cls = BACKBONES[model_cfg["backbone"]]
    return cls(**{argument: model_cfg[key] for argument, key in cls.config_keys.items()})


def build_entities(
    model_cfg: dict,
    kg: KnowledgeGraph,
    entity_parts: int,
    features: Features | None = None,
    paper_compat: bool = False,
    towers: dict | None = None,
    features_cfg: dict | None = None,
    shard: tuple[int, int] | None = None,
) -> Representation:
    """The entity representation: a structural table, or the fused multimodal one when
    ``model.modalities`` is non-empty (then ``features`` must hold those modalities), with an
    imaginary part for complex backbones (``entity_parts == 2``). With ``shard = (rank,
    world)`` every per-entity table (structural, the structural parts and free imaginary rows
    of a multimodal model) holds only this rank's rows (:mod:`vlkge.models.sharded`)."""
    dim, modalities, structural = model_cfg["dim"], model_cfg["modalities"], model_cfg["structural"]
    if not modalities:
        if not structural:
            raise ConfigError("model.structural: false needs at least one of model.modalities")
        every = torch.ones(kg.num_entities, dtype=torch.bool)  # rows are entity ids
        return entity_rows(every, entity_parts * dim, shard, model_cfg["dropout"])
    if features is None:
        raise VlkgeError(
            f"model.modalities is {modalities} but no features were given "
            "(set features.cache_dir to a cache written by `vlkge encode`)"
        )
    missing = [m for m in modalities if m not in features]
    if missing:
        raise VlkgeError(f"no {', '.join(missing)} features for model.modalities {modalities}")
    real = FusedEntityRepresentation(
        {m: features[m] for m in modalities},
        dim,
        kg.seen_in_train(),
        structural=structural,
        fusion=model_cfg["fusion"],
        normalize_parts=model_cfg["normalize_parts"],
        shared_projection=model_cfg["shared_projection"],
        adapter_rank=model_cfg["adapter"],
        paper_compat=paper_compat,
        towers=towers,
        structural_dropout=model_cfg["structural_dropout"],
        neighbours=model_cfg["neighbours"],
        neighbour_temperature=model_cfg["neighbour_temperature"],
        dropout=model_cfg["dropout"],
        shard=shard,
        **_preprocessing(features_cfg),
    )
    return real if entity_parts == 1 else ComplexEntities.around(real, paper_compat, shard)


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
    shard: tuple[int, int] | None = None,
) -> KGEModel:
    """A model for ``kg`` from the ``model`` section of a config.

    ``features`` (``{modality: (FloatTensor[E, w], BoolTensor[E])}``) feed the multimodal
    representation when ``model.modalities`` is set; ``paper_compat`` (``compat.paper``) turns
    on the reference implementation's fusion and initialisation (SPEC 6.3, 6.4); ``towers``
    are fine-tuned encoder towers (:func:`vlkge.encoders.tuning.build_towers`). ``shard =
    (rank, world)``: the entity tables hold only this rank's rows, with the values and the
    generator state of one process's model (no per-entity table is ever whole on a rank).
    """
    interaction = build_interaction(model_cfg)
    entities = build_entities(
        model_cfg, kg, interaction.entity_parts, features, paper_compat, towers, features_cfg, shard
    )
    # relations match the width of one part of an entity vector (k * d for concat fusion)
    width = entities.width // interaction.entity_parts
    reciprocal = model_cfg["reciprocal"]
    num_relations = kg.num_relations * (2 if reciprocal else 1)
    relations = Embedding(
        num_relations, interaction.relation_width(width), init=interaction.init_relations
    )
    model = KGEModel(entities, relations, interaction, kg.num_relations, reciprocal)
    if shard is not None:
        shard_model(model, *shard)
    return model


@torch.no_grad()
def warn_large_margin(
    model: KGEModel, triples: torch.Tensor, loss: str, sample: int = 1024, report: bool = True
) -> bool:
    """Warn (once, when training starts) that ``model.gamma`` is large for the distances the
    model starts from: the median initial score of (up to ``sample`` evenly spaced) training
    ``triples`` is above :data:`SATURATED_SCORE`, so the loss barely pulls true triples closer
    (TransE or RotatE at a small dimension with the default 12). The ``ce`` loss, a softmax,
    is blind to the margin. Draws nothing from the random generators; returns whether it
    warned (or would have: ``report`` false, a rank of sharded tables other than the first,
    which must take part in the fetches)."""
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
    if not report:
        return True
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
