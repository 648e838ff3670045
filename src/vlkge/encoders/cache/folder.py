"""A feature cache folder: its files, its writers' lock, the rows it holds for an encoder, and
committing new ones (the layout is described in :mod:`vlkge.encoders.cache`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from vlkge.encoders.cache.tables import (
    FORMAT,
    SHARD,
    CorruptCache,
    Record,
    read_table,
    temporary_files,
    write_table,
)
from vlkge.errors import DataError, VlkgeError
from vlkge.files import write_text
from vlkge.terms import MODALITIES

log = logging.getLogger(__name__)

LOCK = ".lock"  # held by a process writing the cache
LOCK_TIMEOUT = 600.0  # seconds a writer waits for another one


class CacheFolder:
    """The files of a feature cache in ``folder``; :class:`~.store.FeatureCache` reads and
    fills them."""

    def __init__(self, folder: str | os.PathLike, lock_timeout: float = LOCK_TIMEOUT):
        self.folder = Path(folder).expanduser()
        self.lock_timeout = lock_timeout

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

    def shard_path(self, modality: str, number: int) -> Path:
        return self.folder / f"{modality}.part-{number:06d}.safetensors"

    def next_shard(self, modality: str, rank: int = 0, world: int = 1) -> int:
        """The number of the next shard that ``rank`` of ``world`` writers may take: ranks
        number theirs ``rank, rank + world, ...`` so that they never share a name."""
        numbers = [int(SHARD.match(p.name).group(2)) for p in self.shards(modality)]
        number = max(numbers, default=-1) + 1
        return number + (rank - number) % world

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

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``.lock`` in the folder so that two processes never write one cache at once; a
        second writer waits up to ``lock_timeout`` seconds, then reads what the first wrote."""
        lock = FileLock(self.folder / LOCK)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("%s: waiting for another vlkge encode to finish", self.folder)
            try:
                lock.acquire(timeout=self.lock_timeout)
            except Timeout:
                raise VlkgeError(
                    f"{self.folder}: another vlkge encode is writing this feature cache"
                ) from None
        try:
            yield
        finally:
            lock.release()

    def existing(
        self, modality: str, key: tuple, clean: bool = True
    ) -> tuple[dict[str, Record], bool]:
        """Rows usable under ``key`` (main file, then shards); dirty if anything to merge.
        ``clean`` removes temporary files of an interrupted write (never while other ranks
        write theirs)."""
        records: dict[str, Record] = {}
        dirty = False
        for tmp in temporary_files(self.folder, modality) if clean else ():
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

    def commit(self, modality: str, header: dict, records: dict[str, Record]) -> None:
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
        write_text(
            self.metadata_path(modality),
            json.dumps(description, indent=2, ensure_ascii=False) + "\n",
        )
        for shard in self.shards(modality):
            shard.unlink(missing_ok=True)


def default_cache_dir(dataset: str, encoder: str, text_template: str = "{text}") -> Path:
    """``<vlkge cache>/features/<dataset>/<encoder slug>``, with a short hash of the text
    template when it is not the plain text (so templates never overwrite each other)."""
    from vlkge.data.download import cache_dir

    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder.strip("/")).strip("_") or "encoder"
    if text_template != "{text}":
        slug += "-text-" + hashlib.sha256(text_template.encode()).hexdigest()[:8]
    return cache_dir() / "features" / Path(dataset).name / slug
