"""The imaginary part of complex backbones (ComplEx, RotatE) over a fused real part
(docs/method.md, "Complex backbones"; SPEC 3).

:class:`ImaginaryPart` gives ``Im(e)`` from ``Re(e)``:

- a free learnable row for entities seen in training (when structural parts are enabled: that
  row is structural too) and for entities with a text feature;
- ``tanh(g) * P Re(e)`` for the other entities with an image feature, ``P`` a bias-free
  ``w x w`` map and ``g`` a scalar gate, initialised at ``P = I + noise``, ``g = 0.1`` so that
  both learn (zero init only under paper compatibility, where they never receive a gradient);
- zero otherwise.

:class:`ComplexEntities` composes it with the fused representation into ``[Re ; Im]``
(:func:`vlkge.models.factory.build_entities`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vlkge.models.features import Features
from vlkge.models.legacy import rename_keys
from vlkge.models.multimodal import FusedEntityRepresentation
from vlkge.models.representations import (
    NewFeatures,
    Representation,
    check_imaginary,
)
from vlkge.models.sharded import entity_rows

#: default initial gate of the image-only imaginary path (tanh(0.1) ~ 0.1)
GATE_INIT = 0.1
#: standard deviation of the noise added to the identity initial P
MAP_NOISE = 0.01
#: this module's parameters as older checkpoints named them on the fused representation
LEGACY_KEYS = {"imag": "free", "imag_map": "map", "gate": "gate"}


class ImaginaryPart(nn.Module):
    """``Im(e)`` of ``width``-wide real parts (see the module docstring).

    ``free``: ``BoolTensor[E]``, the entities with a free row (seen with a structural part, or
    with a text); ``image``: those with an image feature (the gated path where not free);
    ``text``: those with a text feature (for new entities' ``mean_text``); ``shard = (rank,
    world)``: the free table holds only the rank's rows (:func:`~.sharded.entity_rows`);
    ``dropout``: the free rows' dropout in training (``model.dropout``, as the real part's).
    """

    def __init__(
        self,
        free: torch.Tensor,
        image: torch.Tensor,
        text: torch.Tensor,
        width: int,
        paper_compat: bool = False,
        shard: tuple[int, int] | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        free, image, text = free.bool().cpu(), image.bool().cpu(), text.bool().cpu()
        gated = image & ~free
        rows = torch.full((len(free),), -1, dtype=torch.long)
        rows[free] = torch.arange(int(free.sum()))
        self.register_buffer("free_row", rows, persistent=False)
        self.register_buffer("gated", gated, persistent=False)
        self.register_buffer("text_rows", rows[text & free], persistent=False)
        self.any_free, self.any_gated = bool(free.any()), bool(gated.any())
        self.free = entity_rows(free, width, shard, dropout)
        self.map = nn.Linear(width, width, bias=False)
        self.gate = nn.Parameter(torch.tensor(0.0 if paper_compat else GATE_INIT))
        if paper_compat:  # the reference's zero init: P and g never receive a gradient
            nn.init.zeros_(self.map.weight)
        else:
            with torch.no_grad():
                self.map.weight.normal_(0.0, MAP_NOISE)
                self.map.weight += torch.eye(width)

    def gated_path(self, re: torch.Tensor) -> torch.Tensor:
        """``tanh(g) P Re(e)``: Im(e) of entities with an image and no free row."""
        return torch.tanh(self.gate) * self.map(re)

    def forward(self, re: torch.Tensor, flat: torch.Tensor | None = None) -> torch.Tensor:
        """Im(e) of entity ids ``flat`` (``None``: all) whose real parts are ``re``."""
        im = torch.zeros_like(re)
        if self.any_gated:
            gated = (self.gated if flat is None else self.gated[flat]).unsqueeze(1)
            im = torch.where(gated, self.gated_path(re), im)
        if self.any_free:
            rows = self.free_row if flat is None else self.free_row[flat]
            im = torch.where((rows >= 0).unsqueeze(1), self.free(rows.clamp_min(0)), im)
        return im

    def of_new(self, re: torch.Tensor, image: torch.Tensor | None, imaginary: str) -> torch.Tensor:
        """Im(e) of new entities whose real parts are ``re`` and which have an image where
        ``image`` (``None``: no image given), by ``imaginary``: ``auto`` takes the gated path
        for those with an image and 0 otherwise (a free row is learnt per training entity and
        none exists for a new one); ``zero`` is always 0; ``mean_text`` is the mean free row
        of the graph's entities with a text feature."""
        im = torch.zeros_like(re)
        if imaginary == "auto" and image is not None:
            im = torch.where(image.unsqueeze(1), self.gated_path(re), im)
        elif imaginary == "mean_text" and len(self.text_rows):
            im = self.free(self.text_rows).mean(0).expand_as(re)
        return im


class ComplexEntities(Representation):
    """``[Re(e) ; Im(e)]``: a fused real part and its :class:`ImaginaryPart`."""

    def __init__(self, real: FusedEntityRepresentation, imaginary: ImaginaryPart):
        super().__init__()
        self.real, self.imaginary = real, imaginary
        self.count, self.width = real.count, 2 * real.width

    @classmethod
    def around(
        cls,
        real: FusedEntityRepresentation,
        paper_compat: bool,
        shard: tuple[int, int] | None = None,
    ) -> ComplexEntities:
        """``real`` with the imaginary part its entities' parts call for (``shard``: see
        :class:`ImaginaryPart`)."""
        free = real.has("structural") | real.has("text")
        imaginary = ImaginaryPart(
            free, real.has("image"), real.has("text"), real.width, paper_compat, shard, real.dropout
        )
        return cls(real, imaginary)

    @property
    def modalities(self) -> Sequence[str]:
        """The real part's modalities."""
        return self.real.modalities

    @property
    def towers(self) -> nn.ModuleDict:
        """The real part's fine-tuned encoder towers."""
        return self.real.towers

    def forward(self, index: torch.Tensor | None = None) -> torch.Tensor:
        flat = None if index is None else index.reshape(-1)
        re = self.real(flat)
        out = torch.cat([re, self.imaginary(re, flat)], -1)
        return out if index is None else out.reshape(*index.shape, self.width)

    def represent(self, features: NewFeatures, imaginary: str = "auto") -> torch.Tensor:
        """``[Re ; Im]`` of new entities: Re as :meth:`FusedEntityRepresentation.represent`,
        Im by ``imaginary`` (:meth:`ImaginaryPart.of_new`)."""
        check_imaginary(imaginary)
        given: Features = self.real.new_features(features)
        re = self.real.represent_given(given)
        image = given["image"][1] if "image" in given else None
        return torch.cat([re, self.imaginary.of_new(re, image, imaginary)], -1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        rename_keys(state_dict, prefix, _split_legacy)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _split_legacy(key: str) -> str:
    """An older checkpoint's key of the fused representation, where it lives now
    (:mod:`.legacy`): the imaginary parameters to ``imaginary``, the rest to ``real``."""
    head, dot, rest = key.partition(".")
    if head in ("real", "imaginary"):
        return key
    if head in LEGACY_KEYS:
        return f"imaginary.{LEGACY_KEYS[head]}{dot}{rest}"
    return f"real.{key}"
