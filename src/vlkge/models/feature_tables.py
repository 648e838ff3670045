"""The entities' modal features as the fused representation reads them (docs/method.md,
"Entity representation").

:class:`FeatureTables` holds, per modality, the frozen feature table after its fitted
preprocessing (:mod:`vlkge.models.preprocess`), or a fine-tuned encoder tower
(:mod:`vlkge.encoders.tuning`, ``encoder.finetune``) whose output replaces that table at every
forward pass. It also guards checkpoints against other features.

The frozen tables are non-persistent buffers, float32 or float16 (``features.dtype``; rows are
upcast to float32 as they are read, never the table whole): they move with ``.to(device)``, the
optimiser never sees them and checkpoints stay small; they are re-read from the feature cache when a run
is loaded. A small persistent ``fingerprint`` per modality (count, sum of row norms, sum of
squares) is saved instead, and loading a checkpoint next to different features is an error.
The fitted transforms are persistent: after a checkpoint is loaded, the frozen tables go
through the transform it brought.
"""

from __future__ import annotations

import torch
from torch import nn

from vlkge.errors import VlkgeError
from vlkge.models.features import Features
from vlkge.models.preprocess import FeatureTransform

TRANSFORM_ROWS = 1 << 16  # rows transformed at a time


def fingerprint(table: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[count, sum of row norms, sum of squares]`` of the rows ``mask`` keeps (float64)."""
    # in blocks: a memory-mapped table is never copied whole
    norms = squares = torch.zeros((), dtype=torch.float64)
    for block, keep in zip(table.split(1 << 16), mask.split(1 << 16), strict=True):
        rows = block[keep].double()
        norms, squares = norms + rows.norm(dim=1).sum(), squares + rows.square().sum()
    return torch.stack([mask.sum().double(), norms, squares])  # all non-negative


class FeatureTables(nn.Module):
    """Per modality, the feature rows the projections read (see the module docstring).

    ``features``: checked tables (:func:`vlkge.models.features.check_features`);
    ``towers``: fine-tuned encoder towers by modality; ``preprocess``, ``preprocess_width``
    and ``normalize_features``: the ``features`` section's transform.
    """

    def __init__(
        self,
        features: Features,
        towers: dict[str, nn.Module] | None = None,
        preprocess: str = "none",
        preprocess_width: int | None = None,
        normalize_features: bool = False,
    ):
        super().__init__()
        self.modalities = list(features)
        self.register_buffer(
            "fingerprint",
            torch.stack([fingerprint(*features[m]) for m in self.modalities])
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
            features = self.transformed(features)
            self.register_load_state_dict_post_hook(_refresh_transformed)
        for name, (table, _) in features.items():
            self.register_buffer(f"frozen_{name}", table, persistent=False)
        # fine-tuned encoder towers replace the frozen features of their modality
        self.towers = nn.ModuleDict(towers or {})

    def frozen(self, name: str) -> torch.Tensor:
        """The frozen (preprocessed) table of modality ``name``, ``[E, width]``."""
        return getattr(self, f"frozen_{name}")

    def table(self, name: str, flat: torch.Tensor | None = None) -> torch.Tensor:
        """Rows ``flat`` (``None``: all) of modality ``name``, float32: the tuned tower's
        output when it is fine-tuned, else the frozen table's rows."""
        if name in self.towers:  # fine-tuned: recomputed from the tower's trained end
            table = self.towers[name]()
            if name in self.transforms:
                table = self.transforms[name](table)
            return table if flat is None else table[flat]
        table = self.frozen(name)
        return (table if flat is None else table[flat]).float()

    def transformed(self, features: Features) -> Features:
        """``features`` through each modality's fitted transform (identity where none), each
        table in its own dtype, transformed in blocks of rows (no float32 copy of a float16
        table)."""
        out = dict(features)
        for name in self.transforms.keys() & features.keys():
            table, mask = features[name]
            transform = self.transforms[name]
            result = torch.empty(
                len(table), transform.width, dtype=table.dtype, device=table.device
            )
            for start in range(0, len(table), TRANSFORM_ROWS):
                rows = slice(start, start + TRANSFORM_ROWS)
                result[rows] = transform(table[rows].float(), mask[rows])
            out[name] = (result, mask)
        return out

    def raw_width(self, name: str) -> int:
        """The width of the encoder's features of ``name`` (before any preprocessing)."""
        if name in self.transforms:
            return self.transforms[name].in_width
        return self.frozen(name).shape[1]

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


def _refresh_transformed(module: FeatureTables, _incompatible) -> None:
    """After a checkpoint is loaded, the frozen tables go through the transform it brought
    (an SVD refit on another machine can differ in signs and last digits)."""
    for name, (table, mask) in module._raw.items():
        device = module.frozen(name).device
        raw = {name: (table.to(device), mask.to(device))}
        setattr(module, f"frozen_{name}", module.transformed(raw)[name][0])
