"""The encoding loop of the feature cache: which entities are stale, and their new rows in
groups of one shard file each (texts by :mod:`vlkge.encoders.texts`, images by
:mod:`vlkge.encoders.images`).

Rows are grouped by ``shard_size`` entities so that an interrupted run loses at most one
group; the cache writes each group as a shard (:mod:`vlkge.encoders.cache`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from vlkge.data.manifest import EntityManifest
from vlkge.encoders.base import Encoder, EntityFeature
from vlkge.encoders.cache.fingerprints import entity_inputs
from vlkge.encoders.cache.tables import Record, table_header
from vlkge.encoders.images import encode_entity_images
from vlkge.encoders.texts import encode_entity_texts

SHARD_SIZE = 1024  # entities per shard file: the most an interrupted run encodes again


@dataclass(frozen=True)
class EncodeOptions:
    """How entities are encoded: images decoded in ``workers`` processes, ``shard_size``
    entities per shard, a progress bar or not, and this process's ``rank`` among ``world``
    processes encoding side by side (their shards are numbered ``rank, rank + world, ...``)."""

    workers: int = 0
    shard_size: int = SHARD_SIZE
    progress: bool = False
    rank: int = 0
    world: int = 1


@dataclass
class Plan:
    """What encoding some entities in one modality involves: each entity's inputs and their
    fingerprints, the table header this encoder writes, and the key under which earlier rows
    are reusable."""

    modality: str
    items: list[tuple[str, list[str]]]
    fingerprints: dict[str, str]
    header: dict
    key: tuple[str, str, int]

    @classmethod
    def build(
        cls,
        encoder: Encoder,
        manifest: EntityManifest,
        entities: Sequence[str],
        modality: str,
        options: EncodeOptions,
    ) -> Plan:
        items, fingerprints = entity_inputs(
            manifest, entities, modality, options.workers, options.progress
        )
        return cls(modality, items, fingerprints, *table_header(encoder, modality))

    def stale(self, records: dict[str, Record]) -> list[tuple[str, list[str]]]:
        """The items without a row in ``records`` for their current inputs."""
        return [
            (entity, inputs)
            for entity, inputs in self.items
            if entity not in records or records[entity].input != self.fingerprints[entity]
        ]


@dataclass
class Encoded:
    """What encoding one modality's stale entities left: the plan, every usable row (old and
    new), whether the folder has anything to merge, and how many rows were encoded."""

    plan: Plan
    records: dict[str, Record]
    dirty: bool
    encoded: int


def encoded_shards(
    encoder: Encoder, plan: Plan, todo: list[tuple[str, list[str]]], options: EncodeOptions
) -> Iterator[dict[str, Record]]:
    """The new rows of ``todo``, by entity, ``options.shard_size`` entities at a time."""
    pending: dict[str, Record] = {}
    for done in _entity_features(encoder, plan.modality, todo, options):
        fingerprint = plan.fingerprints[done.entity]
        pending[done.entity] = Record(fingerprint, done.feature, done.used, done.failures)
        if len(pending) >= options.shard_size:
            yield pending
            pending = {}
    if pending:
        yield pending


def _entity_features(
    encoder: Encoder, modality: str, todo: list[tuple[str, list[str]]], options: EncodeOptions
) -> Iterator[EntityFeature]:
    if modality == "image":
        return encode_entity_images(
            encoder,
            todo,
            batch_size=encoder.batch_size,
            workers=options.workers,
            progress=options.progress,
        )
    return encode_entity_texts(
        encoder, todo, chunk_size=options.shard_size, progress=options.progress
    )
