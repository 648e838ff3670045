"""The VL-KGE entity representation: structural embeddings fused with frozen image/text
features (docs/method.md, "Entity representation"), usable with every backbone.

Parts, in this order: structural ``s_e`` (a learned row, only for entities seen in training),
image ``v_e`` and text ``t_e`` (features from :class:`~vlkge.models.feature_tables.FeatureTables`,
projected to width ``d``). Each entity has the parts it actually has (availability masks); a
missing part is absent, never a zero vector that is averaged in. Structural parts of entities
unseen in training are masked out (the inductive setting): an unseen image-only entity is
represented by ``v_e`` alone. Under paper compatibility the masked structural part still takes
a share of the average, as in the reference implementation (``v_e / 2``).
``structural_dropout`` applies the same masking to a random share of the training entities in
each training pass (for inductive use). With ``neighbours = k > 0`` an entity unseen in
training borrows a structural part from its ``k`` nearest seen entities in feature space
(:mod:`vlkge.models.neighbours`), in evaluation and for new entities in prediction. Entities
hidden by ``structural_dropout`` do not borrow: a model trained that way ranked new entities
worse on the inductive WN9-IMG split, its borrowed parts becoming hubs (docs/results.md,
"Inductive WN9-IMG").

The output is the real vector ``Re(e)``; complex backbones add an imaginary part composed
around it (:mod:`vlkge.models.imaginary`). Entities of the graph and new entities
(:meth:`FusedEntityRepresentation.represent`) go through the same projections, normalisation,
dropout and fusion (:meth:`FusedEntityRepresentation.fused`).

An entity with no part at all (no structural row, no image, no text) is the zero vector; their
number is logged as a warning at construction and kept in ``num_empty``.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from vlkge.errors import ConfigError, VlkgeError, echo
from vlkge.models.feature_tables import FeatureTables
from vlkge.models.features import Features, check_features
from vlkge.models.fusion import FUSIONS, Projection, fuse
from vlkge.models.legacy import rename_keys
from vlkge.models.neighbours import feature_keys, nearest
from vlkge.models.representations import (
    NewFeatures,
    Representation,
    check_imaginary,
    dropped,
)
from vlkge.models.sharded import entity_rows
from vlkge.terms import MODALITIES

log = logging.getLogger(__name__)

#: entries that older checkpoints held on this module and now live in its ``features``
LEGACY_FEATURE_KEYS = ("fingerprint", "transforms", "towers")


class FusedEntityRepresentation(Representation):
    """Entity vectors fused from structural, image and text parts (see the module docstring).

    ``features``: ``{modality: (FloatTensor[E, w], BoolTensor[E])}`` for the enabled
    modalities; ``seen``: ``BoolTensor[E]``, entities that occur in training triples;
    ``towers`` and the preprocessing arguments: see
    :class:`~vlkge.models.feature_tables.FeatureTables`; ``shard = (rank, world)``: the
    structural table holds only the rank's rows (:func:`vlkge.models.sharded.entity_rows`).
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
        paper_compat: bool = False,
        towers: dict[str, nn.Module] | None = None,
        structural_dropout: float = 0.0,
        neighbours: int = 0,
        neighbour_temperature: float = 0.05,
        preprocess: str = "none",
        preprocess_width: int | None = None,
        normalize_features: bool = False,
        dropout: float = 0.0,
        shard: tuple[int, int] | None = None,
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
        self.width = dim * (self.num_parts if fusion == "concat" else 1)
        self.features = FeatureTables(
            features, towers, preprocess, preprocess_width, normalize_features
        )

        # --- availability -----------------------------------------------------------------
        present, counted = [], []
        if structural:
            present.append(seen)
            # the reference counts the masked structural part of unseen entities (SPEC 6.3)
            counted.append(torch.ones_like(seen) if paper_compat else seen)
            rows = torch.full((count,), -1, dtype=torch.long)
            rows[seen] = torch.arange(int(seen.sum()))
            self.register_buffer("struct_row", rows, persistent=False)
            self.structural = entity_rows(seen, dim, shard)
        for name in self.modalities:
            present.append(features[name][1])
            counted.append(features[name][1])
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

        # --- projections and fusion weights -----------------------------------------------
        widths = {m: self.features.frozen(m).shape[1] for m in self.modalities}
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

    @property
    def towers(self) -> nn.ModuleDict:
        """The fine-tuned encoder towers by modality (empty when the features are frozen)."""
        return self.features.towers

    def has(self, part: str) -> torch.Tensor:
        """``BoolTensor[E]``: the entities that have ``part`` (``structural`` or a modality)."""
        parts = (["structural"] if self.has_structural else []) + self.modalities
        if part not in parts:
            return torch.zeros(self.count, dtype=torch.bool, device=self.present.device)
        return self.present[:, parts.index(part)]

    def _find_neighbours(self, features: Features, seen: torch.Tensor) -> None:
        """The bank (seen entities with features: their keys and structural rows) and the
        ``k`` nearest bank entries of every entity that borrows (unseen, with features)."""
        tables = [(self.features.frozen(m), features[m][1]) for m in self.modalities]
        keys, has = feature_keys(tables)
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

    def _borrowed(self, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Weighted sums of structural rows ``[n, k]`` -> ``[n, dim]`` (no ``[n, k, dim]``)."""
        return F.embedding_bag(rows, self.structural.weight, per_sample_weights=weights, mode="sum")

    # --- the graph's entities ------------------------------------------------------------------
    def _rows(self, name: str, flat: torch.Tensor | None) -> torch.Tensor:
        buffer = getattr(self, name)
        return buffer if flat is None else buffer[flat]

    def forward(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """The fused vectors of entity ids ``index`` (``None``: all), ``[*index.shape, width]``."""
        flat = None if index is None else index.reshape(-1)
        present, counted = self._availability(flat)
        structural = None
        if self.has_structural:
            structural = self.structural(self._rows("struct_row", flat).clamp_min(0))
            if self.neighbours:  # unseen entities borrow one
                need = self._rows("borrows", flat).nonzero().squeeze(1)
                borrowed = self._borrowed(
                    self._rows("neighbour_rows", flat)[need],
                    self._rows("neighbour_weights", flat)[need],
                )
                structural = structural.index_put((need,), borrowed)
                present, counted = present.clone(), counted.clone()
                present[need, 0] = counted[need, 0] = True
        tables = {name: self.features.table(name, flat) for name in self.modalities}
        out = self.fused(structural, tables, present, counted)
        return out if index is None else out.reshape(*index.shape, self.width)

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

    def fused(
        self,
        structural: torch.Tensor | None,
        tables: dict[str, torch.Tensor],
        present: torch.Tensor,
        counted: torch.Tensor,
    ) -> torch.Tensor:
        """``[n, width]`` from ``n`` entities' structural parts (``None`` without them), feature
        rows by modality and availability ``[n, parts]``: projected, normalised, dropped out in
        training and fused. The one path of the graph's entities and of new ones."""
        parts = [] if structural is None else [structural]
        parts += [self.projections[name](tables[name]) for name in self.modalities]
        if self.normalize_parts:
            parts = [F.normalize(p, dim=-1) for p in parts]
        parts = [dropped(p, self.dropout, self.training) for p in parts]
        return fuse(parts, present, counted, self.fusion, getattr(self, "fusion_logits", None))

    # --- entities outside the graph -----------------------------------------------------------
    def new_features(self, features: NewFeatures) -> Features:
        """Raw features of ``n`` new entities, checked and preprocessed, each with its row mask.

        ``features``: ``{modality: FloatTensor[n, w]}`` (or ``(features, mask [n])`` when some
        rows lack the modality; a 1-d tensor is one entity), raw encoder outputs of the widths
        this model was trained on; every modality must be one of the model's."""
        device = self.present.device
        given: Features = {}
        for name, value in features.items():
            if name not in self.modalities:
                used = ", ".join(self.modalities) or "none"
                raise VlkgeError(f"the model does not use {name} features (its modalities: {used})")
            table, mask = value if isinstance(value, tuple) else (value, None)
            table = torch.as_tensor(table, dtype=torch.float32, device=device)
            table = table.unsqueeze(0) if table.dim() == 1 else table
            width = self.features.raw_width(name)
            if table.dim() != 2 or table.shape[1] != width:
                raise VlkgeError(
                    f"new {name} features have shape {tuple(table.shape)}; the model was "
                    f"trained on {width}-d {name} features"
                )
            if not torch.isfinite(table).all():
                raise VlkgeError(f"new {name} features hold non-finite values")
            mask = torch.ones(len(table), dtype=torch.bool, device=device) if mask is None else mask
            given[name] = (table, torch.as_tensor(mask, device=device).bool())
        given = self.features.transformed(given)
        if len({len(t) for t, _ in given.values()}) != 1:
            raise VlkgeError("represent needs features of at least one modality, one row each")
        return given

    def represent(self, features: NewFeatures, imaginary: str = "auto") -> torch.Tensor:
        """Vectors ``[n, width]`` of ``n`` entities outside the graph, from raw features
        (:meth:`new_features`), by the rules of an unseen entity: no structural part (under
        paper compatibility it still takes its share of the average; with ``neighbours`` one
        borrowed by feature similarity), then :meth:`fused`. ``imaginary`` (checked) concerns
        only complex backbones (:class:`~vlkge.models.imaginary.ComplexEntities`)."""
        check_imaginary(imaginary)
        return self.represent_given(self.new_features(features))

    def represent_given(self, given: Features) -> torch.Tensor:
        """:meth:`represent` of features already through :meth:`new_features`."""
        n = len(next(iter(given.values()))[0])
        device = self.present.device
        none = torch.zeros(n, dtype=torch.bool, device=device)
        present, counted, structural = [], [], None
        if self.has_structural:
            if self.neighbours:
                structural, has = self._borrowed_for_new(given, n)
            else:
                structural, has = torch.zeros(n, self.dim, device=device), none
            present.append(has)
            counted.append(has | self.paper_compat)
        tables = {}
        for name in self.modalities:
            width = self.features.frozen(name).shape[1]
            table, mask = given.get(name, (None, none))
            tables[name] = (
                torch.zeros(n, width, device=device) if table is None else table * mask[:, None]
            )
            present.append(mask)
            counted.append(mask)
        return self.fused(structural, tables, torch.stack(present, 1), torch.stack(counted, 1))

    def _borrowed_for_new(self, given: Features, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Borrowed structural parts ``[n, dim]`` of new entities and which of them have one."""
        device = self.present.device
        parts = []
        for name in self.modalities:
            width = self.features.frozen(name).shape[1]
            empty = (
                torch.zeros(n, width, device=device),
                torch.zeros(n, dtype=torch.bool, device=device),
            )
            parts.append(given.get(name, empty))
        keys, has = feature_keys(parts)
        index, weight = nearest(keys, self.bank_keys, self.neighbours, self.neighbour_temperature)
        part = self._borrowed(self.bank_rows[index], weight) * has.unsqueeze(1)
        return part, has

    # ----------------------------------------------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        rename_keys(state_dict, prefix, _moved_to_features)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        parts = (["structural"] if self.has_structural else []) + self.modalities
        return (
            f"count={self.count}, dim={self.dim}, parts={parts}, fusion={self.fusion}, "
            f"width={self.width}, paper_compat={self.paper_compat}"
            + (f", neighbours={self.neighbours}" if self.neighbours else "")
        )


def _moved_to_features(key: str) -> str:
    """An older checkpoint's key of this module, where it lives now (:mod:`.legacy`)."""
    return f"features.{key}" if key.split(".")[0] in LEGACY_FEATURE_KEYS else key
