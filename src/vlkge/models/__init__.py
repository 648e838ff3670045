"""Models: representations, backbones (interactions) and their composition."""

from vlkge.models.backbones import BACKBONES, Interaction
from vlkge.models.factory import build_model
from vlkge.models.imaginary import ComplexEntities
from vlkge.models.model import KGEModel
from vlkge.models.multimodal import FusedEntityRepresentation
from vlkge.models.representations import Embedding, Representation

__all__ = [
    "BACKBONES",
    "ComplexEntities",
    "Embedding",
    "FusedEntityRepresentation",
    "Interaction",
    "KGEModel",
    "Representation",
    "build_model",
]
