"""Import precomputed features: .npy/.npz, .safetensors, .pt and the reference's pickles.

Accepted layouts (every vector 1-D, all of one width):

- a mapping entity -> vector, or entity -> several vectors (a list, a dict of vectors, or a 2-D
  array) that are averaged: pickles (``.pkl``/``.pickle``, the reference implementation's
  format), ``.npz``, ``.pt``/``.pth``, ``.safetensors`` with one tensor per entity;
- a matrix ``[n, w]`` plus its entity ids: ``.npy`` (ids from ``ids``, or a sibling
  ``<stem>.ids.txt`` / ``<stem>_ids.txt``, one id per line), a ``.safetensors`` file with a
  ``features`` tensor (ids in its metadata ``entities`` as a JSON list, as the feature cache
  writes them, or from ``ids``), a pickle/``.pt`` holding ``(ids, matrix)`` or
  ``{"ids": ..., "features": ...}``.

Nothing read here runs code (see :mod:`vlkge.untrusted`): pickles may hold only numpy arrays and
plain Python values, ``.pt`` files only tensors and plain values, and ``.npy``/``.npz`` files no
object arrays. Bad content (non-finite values, a wrong width, an entity not in the dataset, an
unreadable or refused file) raises a one-line :class:`~vlkge.errors.DataError` naming the file
and the entity or the refused object.
"""

from __future__ import annotations

import hashlib
import json
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vlkge.errors import DataError, echo
from vlkge.untrusted import load_pickle, load_torch

SUFFIXES = (".npy", ".npz", ".safetensors", ".pkl", ".pickle", ".pt", ".pth")
MATRIX_KEYS = ("features", "embeddings", "vectors", "feats")
ID_KEYS = ("ids", "entities", "entity_ids", "names", "keys")
OBJECT_ARRAYS = (
    "holds Python objects (an object array, as np.save of a dict writes), which vlkge does not "
    "load since unpickling them could run code; save a numeric matrix with its ids (a .npy and "
    "an id list, or an .npz with 'ids' and 'features'), or an .npz of one array per entity"
)


@dataclass
class PrecomputedFeatures:
    """Vectors per entity read from one file."""

    path: Path
    vectors: dict[str, torch.Tensor]  # entity -> float32 [width]
    counts: dict[str, int]  # entity -> number of vectors averaged
    width: int
    fingerprint: str  # sha256 of the file (and of its id list)

    @property
    def name(self) -> str:
        return f"precomputed:{self.path.name}"


def read_features(
    path: str | Path,
    ids: str | Path | Sequence[str] | None = None,
    entities: Iterable[str] | None = None,
    width: int | None = None,
) -> PrecomputedFeatures:
    """Read a feature file (see the module docstring); ``entities`` restricts the allowed ids."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "feature file not found")
    id_list, id_bytes = _read_ids(path, ids)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            raw = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                raw = {key: archive[key] for key in archive.files}
        elif suffix == ".safetensors":
            raw = _load_safetensors(path)
        elif suffix in (".pkl", ".pickle"):
            raw = load_pickle(path)
        elif suffix in (".pt", ".pth"):
            raw = load_torch(path)
        else:
            raise DataError(
                path,
                None,
                f"unknown feature file type {echo(suffix)} (known: {', '.join(SUFFIXES)})",
            )
    except DataError:
        raise
    except Exception as exc:  # corrupt, foreign or refused file: report, one line
        if isinstance(exc, ValueError) and str(exc).startswith("Object arrays"):
            raise DataError(path, None, OBJECT_ARRAYS) from None
        raise DataError(
            path, None, f"cannot read features ({type(exc).__name__}: {echo(exc, quote=False)})"
        ) from None
    mapping = _as_mapping(raw, id_list, path)
    allowed = set(entities) if entities is not None else None
    vectors: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    for key, value in mapping.items():
        entity = str(key)
        if allowed is not None and entity not in allowed:
            raise DataError(path, None, f"entity {echo(entity)} is not in the dataset")
        vector, count = _average(value, path, entity)
        if width is None:
            width = vector.shape[0]
        if vector.shape[0] != width:
            raise DataError(
                path,
                None,
                f"entity {echo(entity)}: vector width {vector.shape[0]}, expected {width}",
            )
        vectors[entity] = vector
        counts[entity] = count
    if not vectors:
        raise DataError(path, None, "holds no feature vectors")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    digest.update(id_bytes)
    return PrecomputedFeatures(path, vectors, counts, int(width), digest.hexdigest())


# --- readers ---------------------------------------------------------------------------------
def _read_ids(path: Path, ids) -> tuple[list[str] | None, bytes]:
    if ids is None:
        for candidate in (
            path.with_name(f"{path.stem}.ids.txt"),
            path.with_name(f"{path.stem}_ids.txt"),
        ):
            if candidate.is_file():
                ids = candidate
                break
        else:
            return None, b""
    if isinstance(ids, (str, Path)):
        ids_path = Path(ids)
        if not ids_path.is_file():
            raise DataError(ids_path, None, "entity id list not found")
        try:
            text = ids_path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise DataError(ids_path, None, "entity id list is not valid UTF-8") from None
        id_list = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        id_list = [str(i) for i in ids]
    return id_list, "\n".join(id_list).encode()


def _load_safetensors(path: Path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        keys = list(handle.keys())
        matrix_key = next((k for k in MATRIX_KEYS if k in keys), None)
        if matrix_key is not None and (len(keys) == 1 or "entities" in metadata):
            matrix = handle.get_tensor(matrix_key)
            out: dict = {"features": matrix}
            if "entities" in metadata:
                out["ids"] = json.loads(metadata["entities"])
                if "valid" in keys:  # a vlkge feature cache: rows without a feature are skipped
                    out["valid"] = handle.get_tensor("valid").bool()
            return out
        return {key: handle.get_tensor(key) for key in keys}


def _as_mapping(raw, id_list: list[str] | None, path: Path) -> Mapping:
    """entity -> value, from the shapes the readers return."""
    if isinstance(raw, Mapping):
        lowered = {str(k).lower(): k for k in raw}
        matrix_key = next((lowered[k] for k in MATRIX_KEYS if k in lowered), None)
        ids_key = next((lowered[k] for k in ID_KEYS if k in lowered), None)
        if matrix_key is not None and (ids_key is not None or id_list is not None):
            ids = id_list if id_list is not None else list(raw[ids_key])
            valid = raw.get("valid")
            mapping = _rows(raw[matrix_key], ids, path)
            if valid is not None:
                mapping = {
                    k: v for (k, v), ok in zip(mapping.items(), valid.tolist(), strict=True) if ok
                }
            return mapping
        if matrix_key is not None and len(raw) == 1:
            raise DataError(
                path, None, "a feature matrix needs its entity ids (one per line, --ids FILE)"
            )
        return raw
    if isinstance(raw, (tuple, list)) and len(raw) == 2 and _is_id_list(raw[0]):
        return _rows(raw[1], [str(i) for i in raw[0]], path)
    if isinstance(raw, (np.ndarray, torch.Tensor)):
        if id_list is None:
            raise DataError(
                path, None, "a feature matrix needs its entity ids (one per line, --ids FILE)"
            )
        return _rows(raw, id_list, path)
    raise DataError(
        path, None, f"expected a mapping entity -> vector or a matrix, found {type(raw).__name__}"
    )


def _is_id_list(value) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, (str, int)) for v in value)


def _rows(matrix, ids: Sequence, path: Path) -> dict:
    if len(ids) != len(matrix):
        raise DataError(path, None, f"{len(matrix)} feature rows but {len(ids)} entity ids")
    out: dict = {}
    for entity, row in zip(ids, matrix, strict=True):
        if str(entity) in out:
            raise DataError(path, None, f"entity {echo(str(entity))} appears twice")
        out[str(entity)] = row
    return out


def _average(value, path: Path, entity: str) -> tuple[torch.Tensor, int]:
    """One vector, or the mean of several (list, dict, 2-D array) -> (float32 vector, count)."""
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        if not value:
            raise DataError(path, None, f"entity {echo(entity)}: no vectors")
        if all(isinstance(v, numbers.Number) for v in value):
            value = np.asarray(value, dtype=np.float64)
        else:
            vectors = [_average(v, path, entity) for v in value]
            if any(count != 1 for _, count in vectors):
                raise DataError(path, None, f"entity {echo(entity)}: vectors nested too deeply")
            widths = {v.shape[0] for v, _ in vectors}
            if len(widths) > 1:
                raise DataError(
                    path,
                    None,
                    f"entity {echo(entity)}: vectors of different widths {sorted(widths)}",
                )
            return torch.stack([v for v, _ in vectors]).mean(0), len(vectors)
    try:
        tensor = torch.as_tensor(
            np.asarray(value) if not isinstance(value, torch.Tensor) else value
        )
        tensor = tensor.detach().to("cpu", torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise DataError(
            path, None, f"entity {echo(entity)}: not a numeric vector ({type(value).__name__})"
        ) from None
    if tensor.dim() == 2:
        count = tensor.shape[0]
        if count == 0:
            raise DataError(path, None, f"entity {echo(entity)}: no vectors")
        tensor = tensor.mean(0)
    elif tensor.dim() == 1:
        count = 1
    else:
        raise DataError(
            path,
            None,
            f"entity {echo(entity)}: expected a vector, found shape {tuple(tensor.shape)}",
        )
    if tensor.numel() == 0:
        raise DataError(path, None, f"entity {echo(entity)}: empty vector")
    if not torch.isfinite(tensor).all():
        raise DataError(path, None, f"entity {echo(entity)}: vector holds NaN or infinite values")
    return tensor.contiguous(), count
