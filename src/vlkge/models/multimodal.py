"""The VL-KGE entity representation: structural embeddings fused with frozen image/text
features (SPEC sections 2 and 3), usable with every backbone.

Parts, in this order: structural ``s_e`` (a learned row, only for entities seen in training),
image ``v_e`` and text ``t_e`` (frozen features, projected to width ``d``). Each entity has
the parts it actually has (availability masks); a missing part is absent, never a zero vector
that is averaged in. Structural parts of entities unseen in training are masked out (the
inductive setting): an unseen image-only entity is represented by ``v_e`` alone. Under paper
compatibility the masked structural part still takes a share of the average, as in the
reference implementation (``v_e / 2``). ``structural_dropout`` applies the same masking to a
random share of the training entities in each training pass (for inductive use). With
``neighbours = k > 0`` an entity unseen in training borrows a structural part from its ``k``
nearest seen entities in feature space (:mod:`vlkge.models.neighbours`), in evaluation and
for new entities in prediction. Entities hidden by ``structural_dropout`` do not borrow: a
model trained that way ranked new entities worse on the inductive WN9-IMG split, its borrowed
parts becoming hubs (docs/results.md, "Inductive WN9-IMG").

For complex backbones (``entity_parts == 2``) the fused vector is ``Re(e)`` and the imaginary
part follows the complex-valued extension (SPEC 3):

- a free learnable row for entities seen in training (when structural parts are enabled:
  that row is structural too) and for entities with a text feature;
- ``tanh(g) * P Re(e)`` for the other entities with an image feature, ``P`` a bias-free
  ``w x w`` map and ``g`` a scalar gate, initialised at ``P = I + noise``, ``g = 0.1`` so that
  both learn (zero init only under paper compatibility, where they never receive a gradient);
- zero otherwise.

An entity with no part at all (no structural row, no image, no text) is the zero vector; their
number is logged as a warning at construction and kept in ``num_empty``.

With ``towers`` (``encoder.finetune``) a modality's features come from a fine-tuned encoder
tower (:mod:`vlkge.encoders.tuning`) at every forward pass instead of the frozen table.

The frozen features are non-persistent buffers: they move with ``.to(device)``, the optimiser
never sees them and checkpoints stay small; they are re-read from the feature cache when a run
is loaded. A small persistent ``fingerprint`` per modality (count, sum of row norms, sum of
squares) is saved instead, and loading a checkpoint next to different features is an error.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from vlkge.errors import ConfigError, VlkgeError, echo
from vlkge.models.features import MODALITIES, Features, check_features
from vlkge.models.fusion import FUSIONS, Projection, fuse
from vlkge.models.neighbours import feature_keys, nearest
from vlkge.models.preprocess import FeatureTransform
from vlkge.models.representations import Embedding, Representation

log = logging.getLogger(__name__)

#: default initial gate of the image-only imaginary path (tanh(0.1) ~ 0.1)
GATE_INIT = 0.1
#: standard deviation of the noise added to the identity initial P
MAP_NOISE = 0.01


def _fingerprint(table: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # in blocks: a memory-mapped table is never copied whole
    norms = squares = torch.zeros((), dtype=torch.float64)
    for block, keep in zip(table.split(1 << 16), mask.split(1 << 16), strict=True):
        rows = block[keep].double()
        norms, squares = norms + rows.norm(dim=1).sum(), squares + rows.square().sum()
    return torch.stack([mask.sum().double(), norms, squares])  # all non-negative


class FusedEntityRepresentation(Representation):
    """Entity vectors fused from structural, image and text parts (see the module docstring).

    ``features``: ``{modality: (FloatTensor[E, w], BoolTensor[E])}`` for the enabled
    modalities; ``seen``: ``BoolTensor[E]``, entities that occur in training triples;
    ``entity_parts``: 2 for complex backbones (``[Re ; Im]`` output), else 1.
    """

    def __init__(
        self,
        features: Features,
        dim: int,
        seen: torch.Tensor,
        *,
        structural: bool = True,
        fusion: str = "average",
        normalize_parts: bool = False,
        shared_projection: bool = False,
        adapter_rank: int = 0,
        entity_parts: int = 1,
        paper_compat: bool = False,
        towers: dict[str, nn.Module] | None = None,
        structural_dropout: float = 0.0,
        neighbours: int = 0,
        neighbour_temperature: float = 0.05,
        preprocess: str = "none",
        preprocess_width: int | None = None,
        normalize_features: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        if fusion not in FUSIONS:
            raise ConfigError(
                f"model.fusion must be one of {', '.join(FUSIONS)}, not {echo(fusion)}"
            )
        self.modalities = [m for m in MODALITIES if m in features]
        if not self.modalities and not structural:
            raise ConfigError("an entity representation needs structural parts or a modality")
        count = len(seen)
        features = check_features(features, count, self.modalities)
        seen = seen.bool().cpu()
        self.count, self.dim, self.fusion = count, dim, fusion
        self.normalize_parts, self.paper_compat = normalize_parts, paper_compat
        self.has_structural, self.dropout = structural, dropout
        self.structural_dropout = structural_dropout if structural else 0.0
        self.num_parts = len(self.modalities) + int(structural)
        self.base_width = dim * (self.num_parts if fusion == "concat" else 1)
        self.entity_parts = entity_parts
        self.width = entity_parts * self.base_width

        # --- preprocessing (models/preprocess.py): fit once, the raw tables kept to refit ----
        self.register_buffer(
            "fingerprint",
            torch.stack([_fingerprint(*features[m]) for m in self.modalities])
            if self.modalities
            else torch.zeros(0, 3, dtype=torch.float64),
        )
        self.transforms = nn.ModuleDict()
        if preprocess != "none" or normalize_features:
            for name in self.modalities:
                self.transforms[name] = FeatureTransform(
                    *features[name], preprocess, preprocess_width, normalize_features
                )
            self._raw = dict(features)  # re-transformed when a checkpoint brings its transform
            features = self._transformed(features)
            self.register_load_state_dict_post_hook(_refresh_transformed)

        # --- availability -----------------------------------------------------------------
        present, counted = [], []
        if structural:
            present.append(seen)
            # the reference counts the masked structural part of unseen entities (SPEC 6.3)
            counted.append(torch.ones_like(seen) if paper_compat else seen)
            rows = torch.full((count,), -1, dtype=torch.long)
            rows[seen] = torch.arange(int(seen.sum()))
            self.register_buffer("struct_row", rows, persistent=False)
            self.structural = Embedding(int(seen.sum()), dim)
        for name in self.modalities:
            table, mask = features[name]
            self.register_buffer(f"feature_{name}", table, persistent=False)
            present.append(mask)
            counted.append(mask)
        self.register_buffer("present", torch.stack(present, 1), persistent=False)
        self.register_buffer("counted", torch.stack(counted, 1), persistent=False)
        empty = ~self.present.any(1)
        self.num_empty = int(empty.sum())
        if self.num_empty:
            log.warning(
                "%d of %d entities have no structural part, image or text: they are the zero "
                "vector",
                self.num_empty,
                count,
            )

        # fine-tuned encoder towers replace the frozen features of their modality
        self.towers = nn.ModuleDict(towers or {})

        # --- projections and fusion weights -----------------------------------------------
        widths = {m: features[m][0].shape[1] for m in self.modalities}
        if shared_projection and len(set(widths.values())) > 1:
            raise ConfigError(
                f"model.shared_projection needs equal feature widths, got {widths} "
                "(use separate projections)"
            )
        if shared_projection and widths:
            shared = Projection(next(iter(widths.values())), dim, adapter_rank)
            self.projections = nn.ModuleDict({m: shared for m in self.modalities})
        else:
            self.projections = nn.ModuleDict(
                {m: Projection(w, dim, adapter_rank) for m, w in widths.items()}
            )
        if fusion == "weighted":
            self.fusion_logits = nn.Parameter(torch.ones(self.num_parts))

        # --- structural parts borrowed from modal neighbours ----------------------------------
        self.neighbours = neighbours if structural and self.modalities else 0
        self.neighbour_temperature = neighbour_temperature
        if self.neighbours:
            self._find_neighbours(features, seen)

        # --- complex-valued extension -----------------------------------------------------
        if entity_parts == 2:
            has_text = features["text"][1] if "text" in features else torch.zeros_like(seen)
            has_image = features["image"][1] if "image" in features else torch.zeros_like(seen)
            free = has_text | (seen if structural else torch.zeros_like(seen))
            gated = has_image & ~free
            rows = torch.full((count,), -1, dtype=torch.long)
            rows[free] = torch.arange(int(free.sum()))
            self.register_buffer("imag_row", rows, persistent=False)
            self.register_buffer("gated", gated, persistent=False)
            self.any_free, self.any_gated = bool(free.any()), bool(gated.any())
            self.imag = Embedding(int(free.sum()), self.base_width)
            self.imag_map = nn.Linear(self.base_width, self.base_width, bias=False)
            self.gate = nn.Parameter(torch.tensor(0.0 if paper_compat else GATE_INIT))
            if paper_compat:  # the reference's zero init: P and g never receive a gradient
                nn.init.zeros_(self.imag_map.weight)
            else:
                with torch.no_grad():
                    self.imag_map.weight.normal_(0.0, MAP_NOISE)
                    self.imag_map.weight += torch.eye(self.base_width)
        elif entity_parts != 1:
            raise ValueError(f"entity_parts must be 1 or 2, not {entity_parts}")

    def _find_neighbours(self, features: Features, seen: torch.Tensor) -> None:
        """The bank (seen entities with features: their keys and structural rows) and the
        ``k`` nearest bank entries of every entity that borrows (unseen, with features)."""
        keys, has = feature_keys([features[m] for m in self.modalities])
        in_bank = seen & has
        if not in_bank.any():
            raise ConfigError("model.neighbours needs seen entities with modal features")
        self.register_buffer("bank_keys", keys[in_bank], persistent=False)
        self.register_buffer("bank_rows", self.struct_row[in_bank], persistent=False)
        borrows = has & ~seen
        index, weight = nearest(
            keys[borrows], self.bank_keys, self.neighbours, self.neighbour_temperature
        )
        rows = torch.zeros(self.count, index.shape[1], dtype=torch.long)
        weights = torch.zeros(self.count, index.shape[1])
        rows[borrows], weights[borrows] = self.bank_rows[index], weight
        self.register_buffer("neighbour_rows", rows, persistent=False)
        self.register_buffer("neighbour_weights", weights, persistent=False)
        self.register_buffer("borrows", borrows, persistent=False)

    def _transformed(self, features: Features) -> Features:
        """``features`` through each modality's fitted transform (identity where none)."""
        return {
            name: (self.transforms[name](table, mask), mask)
            if name in self.transforms
            else (table, mask)
            for name, (table, mask) in features.items()
        }

    def _borrowed(self, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Weighted sums of structural rows ``[n, k]`` -> ``[n, dim]`` (no ``[n, k, dim]``)."""
        return F.embedding_bag(rows, self.structural.weight, per_sample_weights=weights, mode="sum")

    # ----------------------------------------------------------------------------------------
    def _rows(self, name: str, flat: torch.Tensor | None) -> torch.Tensor:
        buffer = getattr(self, name)
        return buffer if flat is None else buffer[flat]

    def _feature(self, name: str, flat: torch.Tensor | None) -> torch.Tensor:
        if name in self.towers:  # fine-tuned: recomputed from the tower's trained end
            table = self.towers[name]()
            if name in self.transforms:
                table = self.transforms[name](table)
            return table if flat is None else table[flat]
        return self._rows(f"feature_{name}", flat)

    def real(self, flat: torch.Tensor | None = None) -> torch.Tensor:
        """The fused (real) vectors of entity ids ``flat`` (``None``: all), ``[n, base_width]``."""
        parts = []
        present, counted = self._availability(flat)
        if self.has_structural:
            rows = self._rows("struct_row", flat)
            parts.append(self.structural(rows.clamp_min(0)))
            if self.neighbours:  # unseen entities borrow one
                need = self._rows("borrows", flat).nonzero().squeeze(1)
                borrowed = self._borrowed(
                    self._rows("neighbour_rows", flat)[need],
                    self._rows("neighbour_weights", flat)[need],
                )
                parts[0] = parts[0].index_put((need,), borrowed)
                present, counted = present.clone(), counted.clone()
                present[need, 0] = counted[need, 0] = True
        for name in self.modalities:
            parts.append(self.projections[name](self._feature(name, flat)))
        if self.normalize_parts:
            parts = [F.normalize(p, dim=-1) for p in parts]
        if self.dropout and self.training:
            parts = [F.dropout(p, self.dropout) for p in parts]
        return fuse(parts, present, counted, self.fusion, getattr(self, "fusion_logits", None))

    def _availability(self, flat: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``present`` and ``counted`` of ids ``flat``; in training, ``structural_dropout``
        hides the structural part of a random share of the entities that have a modality, as
        if they were unseen, so that the modal path learns to carry an entity on its own."""
        present, counted = self._rows("present", flat), self._rows("counted", flat)
        if not (self.training and self.structural_dropout):
            return present, counted
        drop = torch.rand(len(present), device=present.device) < self.structural_dropout
        drop &= present[:, 1:].any(1)
        present = torch.cat([present[:, :1] & ~drop.unsqueeze(1), present[:, 1:]], 1)
        if not self.paper_compat:  # the reference counts a masked structural part (SPEC 6.3)
            counted = torch.cat([counted[:, :1] & ~drop.unsqueeze(1), counted[:, 1:]], 1)
        return present, counted

    def imaginary(self, re: torch.Tensor, flat: torch.Tensor | None = None) -> torch.Tensor:
        """Im(e) for entity ids ``flat`` whose real parts are ``re`` (complex extension)."""
        im = torch.zeros_like(re)
        if self.any_gated:
            gated = self._rows("gated", flat).unsqueeze(1)
            im = torch.where(gated, torch.tanh(self.gate) * self.imag_map(re), im)
        if self.any_free:
            rows = self._rows("imag_row", flat)
            im = torch.where((rows >= 0).unsqueeze(1), self.imag(rows.clamp_min(0)), im)
        return im

    def forward(self, index: torch.Tensor | None = None) -> torch.Tensor:
        flat = None if index is None else index.reshape(-1)
        re = self.real(flat)
        out = re if self.entity_parts == 1 else torch.cat([re, self.imaginary(re, flat)], -1)
        return out if index is None else out.reshape(*index.shape, self.width)

    #: how :meth:`represent` builds Im(e) of a new entity (complex backbones)
    NEW_IMAGINARY = ("auto", "zero", "mean_text")

    def represent(
        self,
        features: dict[str, torch.Tensor | tuple[torch.Tensor, torch.Tensor]],
        imaginary: str = "auto",
    ) -> torch.Tensor:
        """Vectors ``[n, width]`` of ``n`` entities outside the graph, from raw features.

        ``features``: ``{modality: FloatTensor[n, w]}`` (or ``(features, mask [n])`` when some
        rows lack the modality), raw encoder outputs of the widths this model was trained on;
        every modality must be one of the model's. The rules are those of an unseen entity: no
        structural part (under paper compatibility it still takes its share of the average),
        the model's projections, fusion and normalisation. Im(e) for complex backbones, by
        ``imaginary``: ``auto`` (default) takes the gated image path ``tanh(g) P Re(e)`` when
        the entity has an image feature and is 0 otherwise (a free Im row is learnt per
        training entity and none exists for a new one); ``zero`` is always 0; ``mean_text``
        is the mean free Im row of the graph's entities with a text feature.
        """
        if imaginary not in self.NEW_IMAGINARY:
            raise ValueError(f"imaginary must be one of {self.NEW_IMAGINARY}, not {imaginary!r}")
        device = self.present.device
        given: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for name, value in features.items():
            if name not in self.modalities:
                used = ", ".join(self.modalities) or "none"
                raise VlkgeError(f"the model does not use {name} features (its modalities: {used})")
            table, mask = value if isinstance(value, tuple) else (value, None)
            table = torch.as_tensor(table, dtype=torch.float32, device=device)
            table = table.unsqueeze(0) if table.dim() == 1 else table
            width = self._raw_width(name)
            if table.dim() != 2 or table.shape[1] != width:
                raise VlkgeError(
                    f"new {name} features have shape {tuple(table.shape)}; the model was "
                    f"trained on {width}-d {name} features"
                )
            if not torch.isfinite(table).all():
                raise VlkgeError(f"new {name} features hold non-finite values")
            mask = torch.ones(len(table), dtype=torch.bool, device=device) if mask is None else mask
            given[name] = (table, torch.as_tensor(mask, device=device).bool())
        given = self._transformed(given)
        counts = {len(t) for t, _ in given.values()}
        if len(counts) != 1:
            raise VlkgeError("represent needs features of at least one modality, one row each")
        n = counts.pop()
        parts, present, counted = [], [], []
        if self.has_structural and self.neighbours:
            part, has = self._borrowed_for_new(given, n)
            parts.append(part)
            present.append(has)
            counted.append(has | self.paper_compat)
        elif self.has_structural:
            parts.append(torch.zeros(n, self.dim, device=device))
            present.append(torch.zeros(n, dtype=torch.bool, device=device))
            counted.append(torch.full((n,), self.paper_compat, device=device))
        for name in self.modalities:
            table, mask = given.get(name, (None, torch.zeros(n, dtype=torch.bool, device=device)))
            width = getattr(self, f"feature_{name}").shape[1]
            table = torch.zeros(n, width, device=device) if table is None else table * mask[:, None]
            parts.append(self.projections[name](table))
            present.append(mask)
            counted.append(mask)
        if self.normalize_parts:
            parts = [F.normalize(p, dim=-1) for p in parts]
        re = fuse(
            parts,
            torch.stack(present, 1),
            torch.stack(counted, 1),
            self.fusion,
            getattr(self, "fusion_logits", None),
        )
        if self.entity_parts == 1:
            return re
        im = torch.zeros_like(re)
        if imaginary == "auto" and "image" in given:
            gated = torch.tanh(self.gate) * self.imag_map(re)
            im = torch.where(given["image"][1].unsqueeze(1), gated, im)
        elif imaginary == "mean_text" and self.any_free and "text" in self.modalities:
            has_text = self.present[:, int(self.has_structural) + self.modalities.index("text")]
            rows = self.imag_row[has_text & (self.imag_row >= 0)]
            if len(rows):
                im = self.imag(rows).mean(0).expand_as(re)
        return torch.cat([re, im], -1)

    def _borrowed_for_new(
        self, given: dict[str, tuple[torch.Tensor, torch.Tensor]], n: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Borrowed structural parts ``[n, dim]`` of new entities and which of them have one."""
        device = self.present.device
        parts = []
        for name in self.modalities:
            width = getattr(self, f"feature_{name}").shape[1]
            empty = (
                torch.zeros(n, width, device=device),
                torch.zeros(n, dtype=torch.bool, device=device),
            )
            parts.append(given.get(name, empty))
        keys, has = feature_keys(parts)
        index, weight = nearest(keys, self.bank_keys, self.neighbours, self.neighbour_temperature)
        part = self._borrowed(self.bank_rows[index], weight) * has.unsqueeze(1)
        return part, has

    def _raw_width(self, name: str) -> int:
        """The width of the encoder's features of ``name`` (before any preprocessing)."""
        if name in self.transforms:
            return self.transforms[name].in_width
        return getattr(self, f"feature_{name}").shape[1]

    # ----------------------------------------------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "fingerprint")
        if saved is not None and (
            saved.shape != self.fingerprint.shape
            or not torch.allclose(saved.cpu(), self.fingerprint.cpu(), rtol=1e-3, atol=1e-6)
        ):
            raise VlkgeError(
                "the checkpoint was trained with other modal features than the ones loaded "
                f"now ({', '.join(self.modalities)}); point features.cache_dir at the cache "
                "the run used"
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        parts = (["structural"] if self.has_structural else []) + self.modalities
        return (
            f"count={self.count}, dim={self.dim}, parts={parts}, fusion={self.fusion}, "
            f"width={self.width}, paper_compat={self.paper_compat}"
            + (f", neighbours={self.neighbours}" if self.neighbours else "")
        )


def _refresh_transformed(module: FusedEntityRepresentation, _incompatible) -> None:
    """After a checkpoint is loaded, the frozen tables go through the transform it brought
    (an SVD refit on another machine can differ in signs and last digits)."""
    device = module.present.device
    raw = {name: (t.to(device), m.to(device)) for name, (t, m) in module._raw.items()}
    for name, (table, _) in module._transformed(raw).items():
        setattr(module, f"feature_{name}", table)
