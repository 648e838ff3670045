"""Build a model from the resolved configuration (open_clip-style small factory)."""

from __future__ import annotations

from vlkge.data.graph import KnowledgeGraph
from vlkge.models.backbones import BACKBONES, RotatE, TransE
from vlkge.models.model import KGEModel
from vlkge.models.representations import Embedding


def build_interaction(cfg: dict):
    name = cfg["backbone"]
    cls = BACKBONES[name]
    if cls is TransE:
        return TransE(gamma=cfg["gamma"])
    if cls is RotatE:
        return RotatE(gamma=cfg["gamma"], distance=cfg["rotate_distance"])
    return cls()


def build_model(model_cfg: dict, kg: KnowledgeGraph) -> KGEModel:
    """A structural model for ``kg`` from the ``model`` section of a config."""
    interaction = build_interaction(model_cfg)
    dim = model_cfg["dim"]
    entities = Embedding(kg.num_entities, interaction.entity_parts * dim)
    num_relations = kg.num_relations * (2 if model_cfg["reciprocal"] else 1)
    relations = Embedding(
        num_relations, interaction.relation_width(dim), init=interaction.init_relations
    )
    return KGEModel(entities, relations, interaction, kg.num_relations, model_cfg["reciprocal"])
