"""Frozen modal features as the multimodal representation receives them.

The contract (produced by :mod:`vlkge.encoders`): a dict ``{modality: (features, mask)}`` with
``features`` a ``FloatTensor[E, w]`` (float32, or float16 with ``features.dtype: float16``:
upcast by :class:`~vlkge.models.feature_tables.FeatureTables` row by row as read) and ``mask``
a ``BoolTensor[E]``, rows aligned with the graph's entity ids; an entity without the modality
has ``mask`` False (its row is ignored).
"""

from __future__ import annotations

from pathlib import Path

import torch

from vlkge.data.graph import KnowledgeGraph
from vlkge.errors import VlkgeError
from vlkge.terms import check_modality

Features = dict[str, tuple[torch.Tensor, torch.Tensor]]


def check_features(features: Features, num_entities: int, modalities) -> Features:
    """The requested modalities, validated, as float32 (float16 kept) tables with masked rows
    zeroed."""
    out: Features = {}
    for name in modalities:
        if check_modality(name) not in features:
            have = ", ".join(sorted(features)) or "none"
            raise VlkgeError(f"model.modalities asks for {name} features, the cache has {have}")
        table, mask = features[name]
        table, mask = torch.as_tensor(table).cpu(), torch.as_tensor(mask).cpu()
        if table.dim() != 2 or table.shape[0] != num_entities:
            raise VlkgeError(
                f"{name} features have shape {tuple(table.shape)}, expected "
                f"[{num_entities}, width] (one row per entity of the graph)"
            )
        if mask.shape != (num_entities,):
            raise VlkgeError(
                f"{name} mask has shape {tuple(mask.shape)}, expected [{num_entities}]"
            )
        mask = mask.bool()
        # no copy of a table that is already float32 or float16 with zero rows where the mask
        # is False (a memory-mapped cache file stays mapped); checked in blocks for that reason
        if table.dtype not in (torch.float32, torch.float16):
            table = table.float()
        if not mask.all() and table[~mask].any():
            table = table * mask.unsqueeze(1)
        if not all(torch.isfinite(block).all() for block in table.split(1 << 16)):
            raise VlkgeError(f"{name} features hold non-finite values")
        out[name] = (table, mask)
    return out


def feature_cache_dir(cfg: dict, kg: KnowledgeGraph) -> Path:
    """Where a run reads its features: ``features.cache_dir``, else where ``vlkge encode``
    writes by default (the cache folder of the dataset and ``encoder.name``; of a local model
    folder its name, so that the relative and the absolute path find the same cache)."""
    if cfg["features"]["cache_dir"]:
        return Path(cfg["features"]["cache_dir"]).expanduser()
    from vlkge.encoders import local_folder
    from vlkge.encoders.cache import default_cache_dir

    name, template = cfg["encoder"]["name"], cfg["encoder"]["text_template"]
    folder = local_folder(name)
    return default_cache_dir(kg.name, folder.name if folder else name, template)


def cache_encoders(cache_dir: str | Path, modalities) -> dict[str, dict]:
    """Per modality, the encoder and width that the feature cache records for its features
    (metadata as ``vlkge encode`` wrote it); a modality without metadata is left out."""
    from vlkge.encoders.cache import FeatureCache

    cache = FeatureCache(cache_dir)
    out = {}
    for modality in modalities:
        meta = cache.metadata(modality)
        if meta is not None:
            out[modality] = {"encoder": meta["encoder"], "width": int(meta["width"])}
    return out


def load_features(
    cache_dir: str | Path | None, kg: KnowledgeGraph, modalities, dtype: str = "float32"
) -> Features:
    """Read the requested modalities from the feature cache written by ``vlkge encode``,
    aligned with the graph's entity ids, memory-mapped in ``dtype`` (``features.dtype``)."""
    modalities = list(modalities or [])
    if not modalities:
        return {}
    if cache_dir is None:
        raise VlkgeError(
            "model.modalities is set but features.cache_dir is not: point it at the folder "
            "written by `vlkge encode`"
        )
    path = Path(cache_dir).expanduser()
    if not path.is_dir():
        raise VlkgeError(
            f"{path}: feature cache folder not found (run `vlkge encode`, or set "
            "features.cache_dir to the folder it wrote)"
        )
    from vlkge.encoders.cache import FeatureCache  # imported late: encoders pull in more

    features = FeatureCache(path).load(kg.entities, modalities, dtype)
    return check_features(features, kg.num_entities, modalities)
