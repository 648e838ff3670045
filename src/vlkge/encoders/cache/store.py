"""The feature cache: reading features aligned to a graph, filling the cache with an encoder,
importing precomputed features, and the zero-shot prompts kept beside them
(:mod:`vlkge.encoders.cache` describes the files; docs/architecture.md, "An encoder")."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch

from vlkge.data.manifest import EntityManifest
from vlkge.encoders.base import Encoder
from vlkge.encoders.cache.encoding import (
    SHARD_SIZE,
    Encoded,
    EncodeOptions,
    Plan,
    encoded_shards,
)
from vlkge.encoders.cache.fingerprints import text_fingerprint
from vlkge.encoders.cache.folder import CacheFolder
from vlkge.encoders.cache.report import ModalityReport
from vlkge.encoders.cache.tables import (
    PRECOMPUTED,
    PROMPTS,
    CorruptCache,
    Record,
    aligned_table,
    imported,
    read_table,
    table_header,
    write_table,
)
from vlkge.encoders.precomputed import PrecomputedFeatures
from vlkge.errors import DataError, VlkgeError, echo
from vlkge.files import DiskFull
from vlkge.terms import MODALITIES, check_modality

log = logging.getLogger(__name__)


class ModalFeatures(NamedTuple):
    """One modality's features aligned to an entity list (unpacks as ``features, mask``)."""

    features: torch.Tensor  # float32 (or float16) [E, w]; zero rows where mask is False
    mask: torch.Tensor  # bool [E]: the entity has a feature of this modality


class FeatureCache(CacheFolder):
    """Per-modality frozen features of a dataset's entities, kept in ``folder``."""

    # --- reading ---------------------------------------------------------------------------
    def load(
        self,
        entities: Sequence[str],
        modalities: Iterable[str] | None = None,
        dtype: str = "float32",
    ) -> dict[str, ModalFeatures]:
        """Features aligned with ``entities`` for every cached modality (or those asked for).

        Returns ``{modality: ModalFeatures(features [E, w], mask BoolTensor[E])}``, features
        in ``dtype`` (``features.dtype``), memory-mapped; an entity not in the cache, or
        without a usable input, has a zero row and mask False.
        """
        if not self.folder.is_dir():
            raise VlkgeError(f"{self.folder}: feature cache folder not found (run vlkge encode)")
        wanted = list(modalities) if modalities is not None else self.modalities()
        index = {entity: row for row, entity in enumerate(entities)}
        out: dict[str, ModalFeatures] = {}
        for modality in wanted:
            check_modality(modality)
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
            aligned = source == target and len(source) == len(index) == len(table.entities)
            if aligned and dtype == "float32":
                features = table.features  # the mapped file itself
            else:
                features = aligned_table(
                    self.folder, modality, table, source, target, len(index), dtype
                )
            out[modality] = ModalFeatures(features, mask)
        return out

    def widths(self) -> dict[str, int]:
        out = {}
        for modality in MODALITIES:
            meta = self.metadata(modality)
            if meta is not None:
                out[modality] = int(meta["width"])
        return out

    def check_encoder(self, modality: str, encoder: Encoder, advice: str = "") -> dict | None:
        """The metadata of the cached ``modality`` features, once sure that ``encoder`` wrote
        them (its weights fingerprint): another encoder's features live in another space.
        Imported features pass (no vlkge encoder wrote them, see :func:`.tables.imported`).
        ``advice`` ends the error line; ``None`` when the cache has no such metadata."""
        meta = self.metadata(modality)
        if (
            meta is not None
            and not imported(meta)
            and meta.get("fingerprint") != encoder.fingerprint
        ):
            raise VlkgeError(
                f"{self.folder}: encoder {encoder.name} is not the one that wrote the {modality} "
                f"features: they were written by encoder {meta.get('encoder')} (weights differ)"
                f"{advice}"
            )
        return meta

    # --- zero-shot prompts -----------------------------------------------------------------
    def prompts(self, encoder: Encoder) -> dict[str, torch.Tensor]:
        """Text features of the prompts ``encoder`` encoded into this folder before, by prompt
        text (shards of earlier runs merged in); empty without any, or with another encoder's
        (a damaged file is reported and its rows encoded again)."""
        if not self.features_path(PROMPTS).is_file() and not self.shards(PROMPTS):
            return {}
        header, key = table_header(encoder, "text")
        try:
            with self.lock():
                records, dirty = self.existing(PROMPTS, key)
                if dirty and records:
                    self.commit(PROMPTS, header, records)
        except (OSError, DiskFull) as exc:  # a read-only cache: read what is there, merge nothing
            log.info("%s: prompt features read only (%s)", self.folder, _reason(exc))
            records = self.existing(PROMPTS, key, clean=False)[0]
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
            with self.lock():
                path = self.shard_path(PROMPTS, self.next_shard(PROMPTS))
                write_table(path, PROMPTS, header, records)
        except (OSError, DiskFull) as exc:
            log.warning("%s: prompt features not cached (%s)", self.folder, _reason(exc))

    # --- writing ---------------------------------------------------------------------------
    def update(
        self,
        encoder: Encoder,
        manifest: EntityManifest,
        entities: Iterable[str] | None = None,
        modalities: Iterable[str] | None = None,
        *,
        workers: int = 0,
        shard_size: int = SHARD_SIZE,
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
                check_modality(modality)
                if not encoder.has(modality):
                    raise VlkgeError(f"encoder {encoder.name} has no {modality} tower")
        options = EncodeOptions(workers, shard_size, progress)
        self.folder.mkdir(parents=True, exist_ok=True)
        reports = {}
        with self.lock():
            for modality in chosen:
                done = self._encode_stale(encoder, manifest, labels, modality, options, clean=True)
                reports[modality] = self._merge(encoder, labels, done)
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
        shard_size: int = SHARD_SIZE,
        progress: bool = False,
    ) -> int:
        """Encode the stale entities among ``entities[rank::world]`` into this rank's shards,
        without merging (one process merges afterwards with :meth:`update`). Returns how many
        entity rows were encoded."""
        self.folder.mkdir(parents=True, exist_ok=True)
        options = EncodeOptions(workers, shard_size, progress, rank, world)
        mine = list(entities)[rank::world]
        return sum(
            self._encode_stale(encoder, manifest, mine, modality, options, clean=False).encoded
            for modality in modalities
        )

    def _merge(self, encoder: Encoder, labels: list[str], done: Encoded) -> ModalityReport:
        """Drop the rows of ``labels`` that lost the modality, report, and commit what
        changed."""
        plan, records, modality = done.plan, done.records, done.plan.modality
        report = ModalityReport(modality, encoder.name, int(plan.header["width"]))
        report.entities, report.encoded = len(plan.items), done.encoded
        report.reused = len(plan.items) - done.encoded
        dirty = done.dirty
        for entity in labels:  # requested entities that no longer have this modality
            if entity in records and entity not in plan.fingerprints:
                del records[entity]
                report.removed += 1
                dirty = True
        for entity, _ in plan.items:
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
            self.commit(modality, plan.header, records)
        return report

    def _encode_stale(
        self,
        encoder: Encoder,
        manifest: EntityManifest,
        labels: list[str],
        modality: str,
        options: EncodeOptions,
        clean: bool,
    ) -> Encoded:
        """Encode the entities of ``labels`` without a usable row into new shards (``clean``
        as in :meth:`existing`)."""
        plan = Plan.build(encoder, manifest, labels, modality, options)
        records, dirty = self.existing(modality, plan.key, clean)
        todo = plan.stale(records)
        if todo:
            if options.world > 1:
                log.info(
                    "%s: rank %d encodes %d of %d entities",
                    modality,
                    options.rank,
                    len(todo),
                    len(plan.items),
                )
            else:
                log.info("%s: encoding %d of %d entities", modality, len(todo), len(plan.items))
            number = self.next_shard(modality, options.rank, options.world)
            for shard in encoded_shards(encoder, plan, todo, options):
                write_table(self.shard_path(modality, number), modality, plan.header, shard)
                records.update(shard)
                number += options.world
        return Encoded(plan, records, dirty or bool(todo), len(todo))

    def import_features(
        self,
        modality: str,
        source: PrecomputedFeatures,
        entities: Iterable[str] | None = None,
    ) -> ModalityReport:
        """Make ``source``'s vectors this cache's ``modality`` (replacing what was there)."""
        check_modality(modality)
        self.folder.mkdir(parents=True, exist_ok=True)
        header = {
            "encoder": source.name,
            "fingerprint": source.fingerprint,
            "preprocessing": f"{PRECOMPUTED} {source.path.name}",
            "width": str(source.width),
        }
        key = (header["fingerprint"], header["preprocessing"], source.width)
        wanted = set(entities) if entities is not None else None
        vectors = {e: v for e, v in source.vectors.items() if wanted is None or e in wanted}
        report = ModalityReport(modality, source.name, source.width, entities=len(vectors))
        path = self.features_path(modality)
        with self.lock():
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
            self.commit(modality, header, records)
        return report


def _reason(exc: BaseException) -> object:
    """Why a write failed, for a log line (an ``OSError``'s text without its path)."""
    return getattr(exc, "strerror", None) or exc
