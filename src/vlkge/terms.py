"""The fixed names of a knowledge graph's parts, in one place for the config schema, the data,
the encoders, the models and the evaluation: the splits, the side of a triple a query predicts,
the modalities (docs/architecture.md, "A config key")."""

from __future__ import annotations

from vlkge.errors import VlkgeError, echo

SPLITS = ("train", "valid", "test")
SIDES = ("head", "tail")
#: in the order a fused entity joins its parts (models/multimodal.py)
MODALITIES = ("image", "text")


def check_modality(modality: str) -> str:
    """``modality`` when it is one of :data:`MODALITIES`; else one line naming them."""
    if modality not in MODALITIES:
        raise VlkgeError(f"unknown modality {echo(modality)} (known: {', '.join(MODALITIES)})")
    return modality


def check_side(side: str, what: str = "side") -> str:
    """``side`` when it is one of :data:`SIDES`; else one line naming ``what`` it was."""
    if side not in SIDES:
        raise VlkgeError(f"{what} must be head or tail, not {echo(side)}")
    return side
