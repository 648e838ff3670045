"""The allowed values of the config keys that a registry backs, read from the registries.

A backbone, a fusion, a preprocessing, a tie rule... is named once, where it is implemented;
the base layer's validation and ``vlkge config show`` receive these lists from here, wired by
the package root (:mod:`vlkge.config.choices`, docs/architecture.md, "A config key"). This
module sits in the training layer, above every registry it reads.
"""

from __future__ import annotations

import functools

from vlkge.encoders.cache.tables import FEATURE_DTYPES
from vlkge.encoders.tuning import FINETUNE_MODES
from vlkge.evaluation.metrics import HITS_AT
from vlkge.evaluation.prompts import NAME_SOURCES
from vlkge.evaluation.ranking import TIES
from vlkge.models.backbones import BACKBONES
from vlkge.models.fusion import FUSIONS
from vlkge.models.preprocess import PREPROCESS
from vlkge.training.build import OPTIMIZERS
from vlkge.training.losses import REGULARIZER_POWERS
from vlkge.training.regimes import REGIMES


@functools.cache
def registry_choices() -> dict[str, tuple]:
    """``{dotted key: allowed values}`` of every registry-backed key."""
    return {
        "model.backbone": tuple(BACKBONES),
        "model.fusion": tuple(FUSIONS),
        "features.preprocess": tuple(PREPROCESS),
        "features.dtype": tuple(FEATURE_DTYPES),
        "encoder.finetune": tuple(FINETUNE_MODES),
        "validation.metric": ("mrr", *(f"hits@{k}" for k in HITS_AT)),
        "evaluation.ties": tuple(TIES),
        "zero_shot.name_source": tuple(NAME_SOURCES),
        "training.regime": tuple(REGIMES),
        "training.loss": tuple(dict.fromkeys(loss for r in REGIMES.values() for loss in r.LOSSES)),
        "training.optimizer.name": tuple(OPTIMIZERS),
        "training.regularizer.name": ("none", *REGULARIZER_POWERS),
        # the losses each regime computes (read by the regime/loss check, not a key of its own)
        **{f"training.loss/{name}": r.LOSSES for name, r in REGIMES.items()},
    }
