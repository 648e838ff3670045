"""Backbones: one small file per scoring function."""

from vlkge.models.backbones.base import Interaction
from vlkge.models.backbones.complex import ComplEx
from vlkge.models.backbones.distmult import DistMult
from vlkge.models.backbones.rotate import RotatE
from vlkge.models.backbones.transe import TransE

BACKBONES: dict[str, type[Interaction]] = {
    "transe": TransE,
    "distmult": DistMult,
    "complex": ComplEx,
    "rotate": RotatE,
}

__all__ = ["BACKBONES", "ComplEx", "DistMult", "Interaction", "RotatE", "TransE"]
