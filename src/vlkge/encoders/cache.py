"""The on-disk feature cache written by ``vlkge encode`` and read by the multimodal model.

A cache folder holds, per modality (``text``, ``image``):

- ``<modality>.safetensors``: tensors ``features`` (float32 ``[n, w]``), ``valid`` (bool ``[n]``,
  False where an entity had inputs but none was usable, e.g. every image missing) and ``used``
  (int32 ``[n]``, how many texts/images were averaged); its metadata names the rows
  (``entities``, JSON list), their input fingerprints (``inputs``), the encoder, its weights
  fingerprint and preprocessing, and failed inputs per entity;
- ``<modality>.json``: the same description for people (encoder, fingerprint, preprocessing,
  width, counts, failed inputs per entity).

An entity's input fingerprint is the sha256 of its texts, or of its image files' bytes. A row is
reused while the encoder's weights fingerprint, its preprocessing and the entity's input
fingerprint are unchanged; a changed encoder invalidates the whole modality. New rows are first
written as shards (``<modality>.part-NNNNNN.safetensors``, each written atomically), so an
interrupted run resumes where it stopped; the shards are merged into the main file at the end.

The text features of zero-shot prompts (:mod:`vlkge.evaluation.zero_shot`) live beside them in
``prompts.safetensors`` / ``prompts.json``, a table of the same format whose rows are named by
the exact prompt text and keyed by the encoder like a modality: each run adds the prompts it
encoded as a shard, and the next run merges the shards and encodes only prompts never seen.

Every file carries checksums in its metadata (``checksums``): a sha256 of the descriptive
fields, and one per block of ``BLOCK_ROWS`` rows over their entity names, input fingerprints
and tensor bytes. Reading verifies them: a file that cannot be read at all (truncated, garbage)
loses its rows, a block that fails its checksum loses only its rows; either is reported in one
line naming the file, and the next ``update`` re-encodes just what was lost (training refuses
to read a damaged file). Files without checksums (older caches) are read as before.

Writers hold ``.lock`` in the folder (POSIX ``flock``): a second process encoding into the same
cache waits for the first, then reuses what it wrote.

Sharded encoding (``vlkge encode`` under torchrun): each rank encodes its own entities into
shards numbered ``rank, rank + world, ...`` (:meth:`FeatureCache.encode_part`, no lock, no
merge), then one process runs :meth:`FeatureCache.update`, which finds every row in the shards
and merges them without encoding anything again.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

from vlkge.data.manifest import EntityManifest
from vlkge.encoders.base import MODALITIES, Encoder
from vlkge.encoders.images import encode_entity_images
from vlkge.encoders.precomputed import PrecomputedFeatures
from vlkge.errors import DataError, VlkgeError, echo
from vlkge.untrusted import check_regular_file

log = logging.getLogger(__name__)

FORMAT = "vlkge-features-1"
SHARD = re.compile(r"^(text|image|prompts)\.part-(\d+)\.safetensors$")
#: the zero-shot prompts' text features: a table like a modality's, its rows named by prompt text
PROMPTS = "prompts"
BLOCK_ROWS = 64  # rows per checksum: the most a flipped bit costs to re-encode
# metadata fields covered by the header checksum (entities and inputs are in the row blocks)
CHECKED_FIELDS = ("format", "modality", "encoder", "fingerprint", "preprocessing", "width")


class ModalFeatures(NamedTuple):
    """One modality's features aligned to an entity list (unpacks as ``features, mask``)."""

    features: torch.Tensor  # float32 [E, w]; zero rows where mask is False
    mask: torch.Tensor  # bool [E]: the entity has a feature of this modality


class CorruptCache(Exception):
    """A cache file that cannot be read or is inconsistent (internal)."""


@dataclass
class Record:
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


@dataclass
class ModalityReport:
    """What one ``update``/``import_features`` did for one modality."""

    modality: str
    encoder: str
    width: int
    entities: int = 0  # requested entities that have this modality
    encoded: int = 0
    reused: int = 0
    removed: int = 0  # cached rows dropped because the entity lost this modality
    failures: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    without_feature: list[str] = field(default_factory=list)

    @property
    def failed_inputs(self) -> int:
        return sum(len(v) for v in self.failures.values())

    def summary(self) -> str:
        text = (
            f"{self.modality}: {_count(self.entities, 'entity')}, {self.encoded:,} encoded, "
            f"{self.reused:,} reused (width {self.width}, {self.encoder})"
        )
        if self.removed:
            text += f"; {_count(self.removed, 'stale row')} removed"
        if self.failures:
            noun = "image" if self.modality == "image" else "input"
            text += (
                f"; {_count(self.failed_inputs, noun)} missing or unreadable in "
                f"{_count(len(self.failures), 'entity')}"
            )
        if self.without_feature:
            text += (
                f"; {_count(len(self.without_feature), 'entity')} without a usable {self.modality}"
            )
        return text


def _count(n: int, noun: str) -> str:
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{n:,} {noun if n == 1 else plural}"


# --- fingerprints ----------------------------------------------------------------------------
def text_fingerprint(texts: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode()).hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, or a marker saying why it could not be read (a FIFO or a device
    is never opened: reading it could block or never end)."""
    digest = hashlib.sha256()
    try:
        check_regular_file(path)
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        return f"missing:{path}"
    except OSError as exc:
        return f"unreadable:{path}:{type(exc).__name__}"
    return digest.hexdigest()


def images_fingerprint(digests: Iterable[str]) -> str:
    """Order-independent fingerprint of an entity's image files."""
    return hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()


def _image_fingerprints(
    items: list[tuple[str, list[str]]], threads: int, progress: bool
) -> dict[str, str]:
    paths = [p for _, images in items for p in images]
    bar = None
    if progress and paths:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(paths), desc="hashing images", unit="img", leave=False)
    digests: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for path, digest in zip(paths, pool.map(file_digest, paths), strict=True):
            digests[path] = digest
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    return {entity: images_fingerprint(digests[p] for p in images) for entity, images in items}


# --- files -----------------------------------------------------------------------------------
def _atomic_save(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _atomic_text(text: str, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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
    _atomic_save({"features": features, "valid": valid, "used": used}, metadata, path)


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
    folder: Path, modality: str, table: Table, source: list[int], target: list[int], count: int
) -> torch.Tensor:
    """``table``'s rows ``source`` placed at rows ``target`` of a ``[count, width]`` table of
    zeros, memory-mapped from ``<modality>.aligned-<key>.npy`` (written once per cache file and
    entity list) so that it is never held in memory whole; in memory if the folder is
    read-only."""
    import numpy as np

    stat = (folder / f"{modality}.safetensors").stat()
    identity = [table.header, stat.st_size, stat.st_mtime_ns, source, target, count]
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
    path = folder / f"{modality}.aligned-{key}.npy"
    if not path.is_file():
        try:
            for stale in folder.glob(f"{modality}.aligned-*.npy"):
                stale.unlink(missing_ok=True)
            tmp = folder / f".{modality}.aligned-{key}.npy.{os.getpid()}.tmp"
            out = np.lib.format.open_memmap(tmp, "w+", np.float32, (count, table.width))
            src, dst = torch.tensor(source), torch.tensor(target)
            for start in range(0, len(src), BLOCK_ROWS * 1024):
                rows = slice(start, start + BLOCK_ROWS * 1024)
                out[dst[rows].numpy()] = table.features[src[rows]].numpy()
            out.flush()
            del out
            os.replace(tmp, path)
        except OSError:
            log.info("%s: read-only cache, features loaded into memory", folder)
            features = torch.zeros(count, table.width)
            features[target] = table.features[source]
            return features
    return torch.from_numpy(np.load(path, mmap_mode="c"))


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


# --- the cache -------------------------------------------------------------------------------
class FeatureCache:
    """Per-modality frozen features of a dataset's entities, kept in ``folder``."""

    def __init__(self, folder: str | os.PathLike, lock_timeout: float = 600.0):
        self.folder = Path(folder).expanduser()
        self.lock_timeout = lock_timeout  # seconds a writer waits for another one

    def features_path(self, modality: str) -> Path:
        return self.folder / f"{modality}.safetensors"

    def metadata_path(self, modality: str) -> Path:
        return self.folder / f"{modality}.json"

    def shards(self, modality: str) -> list[Path]:
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.iterdir():
            match = SHARD.match(path.name)
            if match and match.group(1) == modality:
                found.append((int(match.group(2)), path))
        return [path for _, path in sorted(found)]

    def modalities(self) -> list[str]:
        """Modalities with a cache file (finished, or shards of an interrupted run)."""
        return [m for m in MODALITIES if self.features_path(m).is_file() or self.shards(m)]

    def metadata(self, modality: str) -> dict | None:
        path = self.metadata_path(modality)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(path, None, f"corrupt cache metadata ({exc})") from None

    # --- reading -------------------------------------------------------------------------
    def load(
        self, entities: Sequence[str], modalities: Iterable[str] | None = None
    ) -> dict[str, ModalFeatures]:
        """Features aligned with ``entities`` for every cached modality (or those asked for).

        Returns ``{modality: ModalFeatures(features FloatTensor[E, w], mask BoolTensor[E])}``;
        an entity not in the cache, or without a usable input, has a zero row and mask False.
        """
        if not self.folder.is_dir():
            raise VlkgeError(f"{self.folder}: feature cache folder not found (run vlkge encode)")
        wanted = list(modalities) if modalities is not None else self.modalities()
        index = {entity: row for row, entity in enumerate(entities)}
        out: dict[str, ModalFeatures] = {}
        for modality in wanted:
            if modality not in MODALITIES:
                raise VlkgeError(
                    f"unknown modality {echo(modality)} (known: {', '.join(MODALITIES)})"
                )
            path = self.features_path(modality)
            if self.shards(modality):
                raise VlkgeError(
                    f"{self.folder}: the {modality} cache is incomplete (an interrupted "
                    "vlkge encode); run the same command again to finish it"
                )
            if not path.is_file():
                raise VlkgeError(f"{path}: no {modality} features in this cache (run vlkge encode)")
            try:
                table = read_table(path)
            except CorruptCache as exc:
                raise DataError(
                    path, None, f"corrupt feature cache ({exc}); run vlkge encode again"
                ) from None
            if table.damaged:
                first = table.entities[table.damaged[0]]
                raise DataError(
                    path,
                    None,
                    f"corrupt feature cache: {len(table.damaged)} row(s) fail their checksum "
                    f"(the first is entity {echo(first)}); run vlkge encode again to recompute them",
                )
            mask = torch.zeros(len(index), dtype=torch.bool)
            source, target = [], []
            for row, entity in enumerate(table.entities):
                position = index.get(entity)
                if position is not None and bool(table.valid[row]):
                    source.append(row)
                    target.append(position)
            mask[target] = True
            if source == target and len(source) == len(index) == len(table.entities):
                features = table.features  # already aligned: the mapped file itself
            else:
                features = aligned_table(self.folder, modality, table, source, target, len(index))
            out[modality] = ModalFeatures(features, mask)
        return out

    def widths(self) -> dict[str, int]:
        out = {}
        for modality in MODALITIES:
            meta = self.metadata(modality)
            if meta is not None:
                out[modality] = int(meta["width"])
        return out

    # --- zero-shot prompts ----------------------------------------------------------------
    def prompts(self, encoder: Encoder) -> dict[str, torch.Tensor]:
        """Text features of the prompts ``encoder`` encoded into this folder before, by prompt
        text (shards of earlier runs merged in); empty without any, or with another encoder's
        (a damaged file is reported and its rows encoded again)."""
        if not self.features_path(PROMPTS).is_file() and not self.shards(PROMPTS):
            return {}
        header, key = table_header(encoder, "text")
        try:
            with self._lock():
                records, dirty = self._existing(PROMPTS, key)
                if dirty and records:
                    self._commit(PROMPTS, header, records)
        except OSError as exc:  # a read-only cache: read what is there, merge nothing
            log.info("%s: prompt features read only (%s)", self.folder, exc.strerror or exc)
            records = self._existing(PROMPTS, key, clean=False)[0]
        return {text: r.feature for text, r in records.items() if r.feature is not None}

    def add_prompts(self, encoder: Encoder, features: dict[str, torch.Tensor]) -> None:
        """Keep newly encoded prompt ``features`` (by prompt text) as a shard, merged into
        ``prompts.safetensors`` by the next :meth:`prompts`; a cache that cannot be written
        only warns."""
        header, _ = table_header(encoder, "text")
        records = {
            text: Record(text_fingerprint([text]), feature.float(), 1)
            for text, feature in features.items()
        }
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with self._lock():
                number = 1 + max(
                    (int(SHARD.match(p.name).group(2)) for p in self.shards(PROMPTS)), default=-1
                )
                path = self.folder / f"{PROMPTS}.part-{number:06d}.safetensors"
                write_table(path, PROMPTS, header, records)
        except OSError as exc:
            log.warning("%s: prompt features not cached (%s)", self.folder, exc.strerror or exc)

    # --- writing -------------------------------------------------------------------------
    def update(
        self,
        encoder: Encoder,
        manifest: EntityManifest,
        entities: Iterable[str] | None = None,
        modalities: Iterable[str] | None = None,
        *,
        workers: int = 0,
        shard_size: int = 1024,
        progress: bool = False,
    ) -> dict[str, ModalityReport]:
        """Encode what is new or changed, reuse the rest, and write the cache.

        ``entities`` defaults to every entity of the manifest; ``modalities`` to those the
        encoder has a tower for. Images are decoded in ``workers`` processes.
        """
        labels = list(entities) if entities is not None else manifest.entities()
        if modalities is None:
            chosen = list(encoder.modalities)
        else:
            chosen = list(dict.fromkeys(modalities))
            for modality in chosen:
                if modality not in MODALITIES:
                    raise VlkgeError(
                        f"unknown modality {echo(modality)} (known: {', '.join(MODALITIES)})"
                    )
                if not encoder.has(modality):
                    raise VlkgeError(f"encoder {encoder.name} has no {modality} tower")
        self.folder.mkdir(parents=True, exist_ok=True)
        reports = {}
        with self._lock():
            for modality in chosen:
                reports[modality] = self._update_modality(
                    encoder, manifest, labels, modality, workers, shard_size, progress
                )
        return reports

    def encode_part(
        self,
        encoder: Encoder,
        manifest: EntityManifest,
        entities: Sequence[str],
        modalities: Iterable[str],
        *,
        rank: int,
        world: int,
        workers: int = 0,
        shard_size: int = 1024,
        progress: bool = False,
    ) -> int:
        """Encode the stale entities among ``entities[rank::world]`` into this rank's shards,
        without merging (one process merges afterwards with :meth:`update`). Returns how many
        entity rows were encoded."""
        self.folder.mkdir(parents=True, exist_ok=True)
        mine = list(entities)[rank::world]
        encoded = 0
        for modality in modalities:
            items, fingerprints, header, key = _plan(
                encoder, manifest, mine, modality, workers, progress
            )
            records, _ = self._existing(modality, key, clean=False)
            todo = [(e, inputs) for e, inputs in items if _stale(records.get(e), fingerprints[e])]
            if todo:
                log.info(
                    "%s: rank %d encodes %d of %d entities", modality, rank, len(todo), len(items)
                )
                self._encode(
                    encoder,
                    modality,
                    todo,
                    fingerprints,
                    header,
                    records,
                    workers,
                    shard_size,
                    progress,
                    rank,
                    world,
                )
            encoded += len(todo)
        return encoded

    @contextlib.contextmanager
    def _lock(self):
        """Hold ``.lock`` in the folder so that two runs never write one cache at once; a
        second writer waits up to ``lock_timeout`` seconds, then reads what the first wrote."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking
            yield
            return
        with open(self.folder / ".lock", "a+") as handle:
            deadline = time.monotonic() + self.lock_timeout
            for attempt in itertools.count():
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        raise VlkgeError(
                            f"{self.folder}: another vlkge encode is writing this feature cache"
                        ) from None
                    if not attempt:
                        log.info("%s: waiting for another vlkge encode to finish", self.folder)
                    time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _update_modality(
        self,
        encoder: Encoder,
        manifest: EntityManifest,
        labels: list[str],
        modality: str,
        workers: int,
        shard_size: int,
        progress: bool,
    ) -> ModalityReport:
        items, fingerprints, header, key = _plan(
            encoder, manifest, labels, modality, workers, progress
        )
        records, dirty = self._existing(modality, key)
        report = ModalityReport(modality, encoder.name, int(header["width"]), entities=len(items))
        todo = [(e, inputs) for e, inputs in items if _stale(records.get(e), fingerprints[e])]
        report.reused = len(items) - len(todo)
        if todo:
            dirty = True
            log.info("%s: encoding %d of %d entities", modality, len(todo), len(items))
            self._encode(
                encoder,
                modality,
                todo,
                fingerprints,
                header,
                records,
                workers,
                shard_size,
                progress,
            )
            report.encoded = len(todo)
        for entity in labels:  # requested entities that no longer have this modality
            if entity in records and entity not in fingerprints:
                del records[entity]
                report.removed += 1
                dirty = True
        for entity, _ in items:
            record = records[entity]
            if record.failures:
                report.failures[entity] = list(record.failures)
            if record.feature is None:
                report.without_feature.append(entity)
        if (
            dirty
            or not self.features_path(modality).is_file()
            or not self.metadata_path(modality).is_file()
        ):
            self._commit(modality, header, records)
        return report

    def _existing(
        self, modality: str, key: tuple, clean: bool = True
    ) -> tuple[dict[str, Record], bool]:
        """Rows usable with this encoder (main file, then shards); dirty if anything to merge.
        ``clean`` removes temporary files of an interrupted write (never while other ranks
        write theirs)."""
        records: dict[str, Record] = {}
        dirty = False
        for tmp in self.folder.glob(f"{modality}*.tmp") if clean else ():
            tmp.unlink(missing_ok=True)
        for path in [self.features_path(modality), *self.shards(modality)]:
            if not path.is_file():
                continue
            is_shard = path != self.features_path(modality)
            dirty |= is_shard
            try:
                table = read_table(path)
            except CorruptCache as exc:
                log.warning("%s: corrupt cache file (%s); re-encoding its entries", path, exc)
                dirty = True
                continue
            if table.key() != key:
                log.info("%s: written by another encoder or preprocessing; re-encoding", path)
                dirty = True
                continue
            if table.damaged:
                names = [table.entities[row] for row in table.damaged[:3]]
                log.warning(
                    "%s: %d row(s) fail their checksum (%s%s); re-encoding them",
                    path,
                    len(table.damaged),
                    ", ".join(names),
                    ", ..." if len(table.damaged) > 3 else "",
                )
                dirty = True
            if is_shard:
                log.info("%s: resuming an interrupted run", path.name)
            records.update(table.records())
        return records, dirty

    def _encode(
        self,
        encoder: Encoder,
        modality: str,
        todo: list[tuple[str, list[str]]],
        fingerprints: dict[str, str],
        header: dict,
        records: dict[str, Record],
        workers: int,
        shard_size: int,
        progress: bool,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        existing = [int(SHARD.match(p.name).group(2)) for p in self.shards(modality)]
        # numbers rank, rank + world, ...: ranks encoding side by side never share a name
        sequence = max(existing, default=-1) + 1
        sequence += (rank - sequence) % world
        pending: dict[str, Record] = {}

        def flush() -> None:
            nonlocal sequence
            if pending:
                path = self.folder / f"{modality}.part-{sequence:06d}.safetensors"
                write_table(path, modality, header, pending)
                records.update(pending)
                pending.clear()
                sequence += world

        if modality == "image":
            for done in encode_entity_images(
                encoder,
                todo,
                batch_size=encoder.batch_size,
                workers=workers,
                progress=progress,
            ):
                pending[done.entity] = Record(
                    fingerprints[done.entity], done.feature, done.used, done.failures
                )
                if len(pending) >= shard_size:
                    flush()
        else:
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(todo), desc="texts", unit="entity", leave=False)
            try:
                for start in range(0, len(todo), shard_size):
                    chunk = todo[start : start + shard_size]
                    texts = [t for _, entity_texts in chunk for t in entity_texts]
                    vectors = encoder.encode_texts(texts)
                    row = 0
                    for entity, entity_texts in chunk:
                        count = len(entity_texts)
                        feature = vectors[row : row + count].mean(0)
                        row += count
                        pending[entity] = Record(fingerprints[entity], feature, count)
                    flush()
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
        flush()

    def _commit(self, modality: str, header: dict, records: dict[str, Record]) -> None:
        """Merge into the main file, write the JSON description, drop the shards."""
        for feature in (r.feature for r in records.values() if r.feature is not None):
            if not torch.isfinite(feature).all():
                raise VlkgeError(f"encoder {header['encoder']} produced non-finite features")
        write_table(self.features_path(modality), modality, header, records)
        failures = {e: r.failures for e, r in records.items() if r.failures}
        description = {
            "format": FORMAT,
            "modality": modality,
            "encoder": header["encoder"],
            "fingerprint": header["fingerprint"],
            "preprocessing": header["preprocessing"],
            "width": int(header["width"]),
            "entities": len(records),
            "with_feature": sum(r.feature is not None for r in records.values()),
            "failed_inputs": failures,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        _atomic_text(
            json.dumps(description, indent=2, ensure_ascii=False) + "\n",
            self.metadata_path(modality),
        )
        for shard in self.shards(modality):
            shard.unlink(missing_ok=True)

    def import_features(
        self,
        modality: str,
        source: PrecomputedFeatures,
        entities: Iterable[str] | None = None,
    ) -> ModalityReport:
        """Make ``source``'s vectors this cache's ``modality`` (replacing what was there)."""
        if modality not in MODALITIES:
            raise VlkgeError(f"unknown modality {echo(modality)} (known: {', '.join(MODALITIES)})")
        self.folder.mkdir(parents=True, exist_ok=True)
        header = {
            "encoder": source.name,
            "fingerprint": source.fingerprint,
            "preprocessing": f"precomputed {source.path.name}",
            "width": str(source.width),
        }
        key = (header["fingerprint"], header["preprocessing"], source.width)
        wanted = set(entities) if entities is not None else None
        vectors = {e: v for e, v in source.vectors.items() if wanted is None or e in wanted}
        report = ModalityReport(modality, source.name, source.width, entities=len(vectors))
        path = self.features_path(modality)
        with self._lock():
            if path.is_file() and not self.shards(modality):
                try:
                    table = read_table(path)
                    if (
                        table.key() == key
                        and set(table.entities) == set(vectors)
                        and not table.damaged
                    ):
                        report.reused = len(vectors)
                        return report
                except CorruptCache:
                    pass
            records = {
                e: Record(source.fingerprint, v, source.counts.get(e, 1))
                for e, v in vectors.items()
            }
            report.encoded = len(records)
            self._commit(modality, header, records)
        return report


def _stale(record: Record | None, fingerprint: str) -> bool:
    return record is None or record.input != fingerprint


def _plan(encoder: Encoder, manifest, labels, modality: str, workers: int, progress: bool):
    """What encoding ``labels`` in ``modality`` involves: ``(items, fingerprints, header,
    key)``: each entity's inputs, their fingerprints, the table header this encoder writes and
    the key under which earlier rows are reusable."""
    source = manifest.texts if modality == "text" else manifest.images
    items = [(e, list(source[e])) for e in labels if source.get(e)]
    if modality == "text":
        fingerprints = {e: text_fingerprint(texts) for e, texts in items}
    else:
        fingerprints = _image_fingerprints(items, max(workers, 4), progress)
    return items, fingerprints, *table_header(encoder, modality)


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


def default_cache_dir(dataset: str, encoder: str, text_template: str = "{text}") -> Path:
    """``<vlkge cache>/features/<dataset>/<encoder slug>``, with a short hash of the text
    template when it is not the plain text (so templates never overwrite each other)."""
    from vlkge.data.download import cache_dir

    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder.strip("/")).strip("_") or "encoder"
    if text_template != "{text}":
        slug += "-text-" + hashlib.sha256(text_template.encode()).hexdigest()[:8]
    return cache_dir() / "features" / Path(dataset).name / slug
