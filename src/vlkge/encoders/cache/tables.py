"""The feature cache's files: a table per modality, its checksums, and reading it back mapped.

The layout of a table (tensors ``features``, ``valid``, ``used`` and the metadata naming the rows)
and what the checksums cover are described in :mod:`vlkge.encoders.cache`. Reading raises
:class:`CorruptCache` for a file that cannot be used at all and lists the rows of a block that
fails its checksum in :attr:`Table.damaged`, so that only those are encoded again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vlkge.encoders.base import Encoder
from vlkge.errors import DataError, echo
from vlkge.files import DiskFull, atomic_write

log = logging.getLogger(__name__)

FORMAT = "vlkge-features-1"
SHARD = re.compile(r"^(text|image|prompts)\.part-(\d+)\.safetensors$")
#: the zero-shot prompts' text features: a table like a modality's, its rows named by prompt text
PROMPTS = "prompts"
BLOCK_ROWS = 64  # rows per checksum: the most a flipped bit costs to re-encode
# metadata fields covered by the header checksum (entities and inputs are in the row blocks)
CHECKED_FIELDS = ("format", "modality", "encoder", "fingerprint", "preprocessing", "width")
#: how the ``preprocessing`` of imported features begins (no encoder of vlkge wrote them)
PRECOMPUTED = "precomputed"
#: ``features.dtype``: the dtype of the mapped aligned tables, and the name of their files
#: (``<modality>.<name>-<key>.npy``: a float32 and a float16 copy never share a file)
FEATURE_DTYPES = {"float32": "aligned", "float16": "aligned16"}


class CorruptCache(Exception):
    """A cache file that cannot be read or is inconsistent (internal)."""


@dataclass
class Record:
    """One row of a table: an entity's input fingerprint and its feature."""

    input: str  # input fingerprint
    feature: torch.Tensor | None  # None: inputs present but none usable
    used: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Table:
    """A cache file as stored."""

    header: dict
    entities: list[str]
    features: torch.Tensor
    valid: torch.Tensor
    used: torch.Tensor
    inputs: list[str]
    failures: dict[str, list[list[str]]]
    damaged: list[int] = field(default_factory=list)  # rows failing their checksum

    def key(self) -> tuple[str, str, int]:
        return (self.header["fingerprint"], self.header["preprocessing"], self.width)

    @property
    def width(self) -> int:
        return int(self.header["width"])

    def records(self) -> dict[str, Record]:
        """The usable rows (damaged ones left out, so that they are encoded again)."""
        out = {}
        damaged = set(self.damaged)
        for row, entity in enumerate(self.entities):
            if row in damaged:
                continue
            feature = self.features[row].clone() if bool(self.valid[row]) else None
            failures = [(str(p), str(r)) for p, r in self.failures.get(entity, [])]
            out[entity] = Record(self.inputs[row], feature, int(self.used[row]), failures)
        return out


def table_header(encoder: Encoder, modality: str) -> tuple[dict, tuple[str, str, int]]:
    """The header of the tables ``encoder`` writes for ``modality`` and the key under which
    their rows are reusable (weights fingerprint, preprocessing, width)."""
    header = {
        "encoder": encoder.name,
        "fingerprint": encoder.fingerprint,
        "preprocessing": encoder.modality_preprocessing(modality),
        "width": str(encoder.width(modality)),
    }
    return header, (header["fingerprint"], header["preprocessing"], int(header["width"]))


def imported(metadata: dict) -> bool:
    """Whether a table's metadata describes imported features (``vlkge encode
    --text-features``/``--image-features``) rather than features of a vlkge encoder."""
    return str(metadata.get("preprocessing", "")).startswith(PRECOMPUTED)


# --- writing -----------------------------------------------------------------------------------
def block_checksums(
    entities: Sequence[str],
    inputs: Sequence[str],
    tensors: Sequence[torch.Tensor],
    block_rows: int,
) -> list[str]:
    """sha256 of each block of ``block_rows`` rows: names, input fingerprints, tensor bytes."""
    out = []
    for start in range(0, len(entities), block_rows):
        end = start + block_rows
        rows = [list(entities[start:end]), list(inputs[start:end])]
        digest = hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode())
        for tensor in tensors:
            digest.update(tensor[start:end].contiguous().numpy().tobytes())
        out.append(digest.hexdigest())
    return out


def header_checksum(metadata: dict[str, str]) -> str:
    fields = [metadata.get(key, "") for key in (*CHECKED_FIELDS, "failures")]
    return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()


def write_table(path: Path, modality: str, header: dict, records: dict[str, Record]) -> None:
    """Write ``records`` as the table at ``path``, whole or not at all."""
    from safetensors.torch import save_file

    width = int(header["width"])
    entities = list(records)
    features = torch.zeros(len(entities), width, dtype=torch.float32)
    valid = torch.zeros(len(entities), dtype=torch.bool)
    used = torch.zeros(len(entities), dtype=torch.int32)
    for row, entity in enumerate(entities):
        record = records[entity]
        if record.feature is not None:
            features[row] = record.feature
            valid[row] = True
        used[row] = record.used
    metadata = {
        "format": FORMAT,
        "modality": modality,
        "encoder": header["encoder"],
        "fingerprint": header["fingerprint"],
        "preprocessing": header["preprocessing"],
        "width": str(width),
        "entities": json.dumps(entities, ensure_ascii=False),
        "inputs": json.dumps([records[e].input for e in entities]),
        "failures": json.dumps(
            {e: records[e].failures for e in entities if records[e].failures},
            ensure_ascii=False,
        ),
    }
    inputs = [records[e].input for e in entities]
    metadata["checksums"] = json.dumps(
        {
            "header": header_checksum(metadata),
            "block_rows": BLOCK_ROWS,
            "blocks": block_checksums(entities, inputs, (features, valid, used), BLOCK_ROWS),
        }
    )
    tensors = {"features": features, "valid": valid, "used": used}
    with atomic_write(path, binary=True) as handle:
        # safetensors writes the temporary file by its name: no second copy of a large table
        save_file(tensors, handle.name, metadata=metadata)


def temporary_files(folder: Path, table: str) -> list[Path]:
    """Temporary files of interrupted writes of ``table``'s files and shards (not of the
    aligned copies, which a reader may be writing without the lock)."""
    aligned = tuple(f".{table}.{name}-" for name in FEATURE_DTYPES.values())
    return [p for p in folder.glob(f".{table}.*.tmp") if not p.name.startswith(aligned)]


# --- reading -----------------------------------------------------------------------------------
def mapped_tensor(path: Path, name: str, view) -> torch.Tensor:
    """Tensor ``name`` of a safetensors file, memory-mapped (copy-on-write) instead of read:
    a feature table larger than memory is paged in on use and shared between processes."""
    import numpy as np

    with open(path, "rb") as handle:
        header_size = int.from_bytes(handle.read(8), "little")
        begin, end = json.loads(handle.read(header_size))[name]["data_offsets"]
    shape = tuple(view.get_shape())
    if view.get_dtype() != "F32" or not all(shape) or end - begin != 4 * math.prod(shape):
        return view[:]  # not a float32 table with rows (read_table reports the rest)
    array = np.memmap(path, np.float32, mode="c", offset=8 + header_size + begin, shape=shape)
    return torch.from_numpy(array)


def aligned_table(
    folder: Path,
    modality: str,
    table: Table,
    source: list[int],
    target: list[int],
    count: int,
    dtype: str = "float32",
) -> torch.Tensor:
    """``table``'s rows ``source`` placed at rows ``target`` of a ``[count, width]`` table of
    zeros in ``dtype`` (a :data:`FEATURE_DTYPES` name), memory-mapped from
    ``<modality>.aligned-<key>.npy`` (float16: ``aligned16-``; written once per cache file and
    entity list) so that it is never held in memory whole; in memory if the folder is
    read-only (or full). A copy of the wrong size or dtype is a :class:`DataError`."""
    import numpy as np

    stat = (folder / f"{modality}.safetensors").stat()
    identity = [table.header, stat.st_size, stat.st_mtime_ns, source, target, count]
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
    name = FEATURE_DTYPES[dtype]
    path = folder / f"{modality}.{name}-{key}.npy"
    shape = (count, table.width)
    if not path.is_file():
        try:
            for stale in folder.glob(f"{modality}.{name}-*.npy"):
                stale.unlink(missing_ok=True)
            with atomic_write(path, binary=True) as handle:
                out = np.lib.format.open_memmap(handle.name, "w+", np.dtype(dtype), shape)
                src, dst = torch.tensor(source), torch.tensor(target)
                for start in range(0, len(src), BLOCK_ROWS * 1024):
                    rows = slice(start, start + BLOCK_ROWS * 1024)
                    out[dst[rows].numpy()] = table.features[src[rows]].numpy()  # cast on write
                out.flush()
                del out
        except (OSError, DiskFull):
            log.info("%s: read-only cache, features loaded into memory", folder)
            features = torch.zeros(count, table.width, dtype=getattr(torch, dtype))
            features[target] = table.features[source].to(features.dtype)
            return features
    try:  # never unpickles (allow_pickle stays False)
        array = np.load(path, mmap_mode="c")
        found = f"{array.dtype} {tuple(array.shape)}"
    except (OSError, ValueError) as exc:  # truncated, not an .npy file
        array, found = None, echo(exc, quote=False)
    if array is None or array.shape != shape or array.dtype != np.dtype(dtype):
        raise DataError(
            path,
            None,
            f"corrupt aligned copy of the {modality} features ({found}; expected {dtype} "
            f"{shape}); delete it and the next run writes it again",
        )
    return torch.from_numpy(array)


def read_table(path: Path) -> Table:
    """Read one cache file; raises :class:`CorruptCache` on anything unexpected."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise CorruptCache(f"not a vlkge feature cache (format {metadata.get('format')})")
            features = mapped_tensor(path, "features", handle.get_slice("features"))
            valid = handle.get_tensor("valid").bool()
            used = handle.get_tensor("used")
        header = {k: metadata[k] for k in ("encoder", "fingerprint", "preprocessing", "width")}
        header["modality"] = metadata.get("modality", "")
        entities = json.loads(metadata["entities"])
        inputs = json.loads(metadata["inputs"])
        failures = json.loads(metadata.get("failures", "{}"))
        checksums = json.loads(metadata["checksums"]) if "checksums" in metadata else None
    except CorruptCache:
        raise
    except Exception as exc:  # truncated, garbage, missing keys, bad JSON
        raise CorruptCache(f"{type(exc).__name__}: {echo(exc, quote=False)}") from None
    n, width = len(entities), int(header["width"])
    if features.shape != (n, width) or valid.shape != (n,) or used.shape != (n,):
        raise CorruptCache(
            f"shapes {tuple(features.shape)}/{tuple(valid.shape)} do not match {n} entities"
        )
    if len(inputs) != n or len(set(entities)) != n:
        raise CorruptCache("entity list and input fingerprints disagree")
    if features.dtype != torch.float32:
        raise CorruptCache(f"features are {features.dtype}, not float32")
    finite = torch.cat([torch.isfinite(b).all(1) for b in features.split(BLOCK_ROWS * 1024)])
    damaged = set((valid & ~finite).nonzero().squeeze(1).tolist())
    if checksums is not None:
        damaged |= _failed_checksums(checksums, metadata, entities, inputs, (features, valid, used))
    return Table(header, entities, features, valid, used, inputs, failures, sorted(damaged))


def _failed_checksums(
    checksums: dict,
    metadata: dict[str, str],
    entities: list[str],
    inputs: list[str],
    tensors: tuple[torch.Tensor, ...],
) -> set[int]:
    """Rows whose block checksum does not match; a damaged header is a corrupt file."""
    try:
        block_rows, expected = int(checksums["block_rows"]), list(checksums["blocks"])
        header = checksums["header"]
    except (TypeError, KeyError, ValueError):
        raise CorruptCache("unreadable checksums") from None
    if header != header_checksum(metadata):
        raise CorruptCache("the file's description fails its checksum")
    actual = block_checksums(entities, inputs, tensors, max(block_rows, 1))
    if len(actual) != len(expected):
        raise CorruptCache(f"{len(expected)} row checksums for {len(actual)} blocks")
    damaged: set[int] = set()
    for block, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if want != got:
            damaged.update(range(block * block_rows, min(len(entities), (block + 1) * block_rows)))
    return damaged
