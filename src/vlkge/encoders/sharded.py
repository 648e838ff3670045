"""``vlkge encode`` across the ranks of a ``torchrun`` launch: entities split, cache merged once.

Each rank encodes the stale entities among ``entities[rank::world]`` into shards of its own
(:meth:`FeatureCache.encode_part`); after a barrier rank 0 runs the ordinary
:meth:`FeatureCache.update`, which finds every row in the shards and merges them, encoding
nothing again. A single process simply runs ``update``.
"""

from __future__ import annotations

from collections.abc import Sequence

from vlkge import distributed
from vlkge.data.manifest import EntityManifest
from vlkge.encoders.base import Encoder
from vlkge.encoders.cache import FeatureCache, ModalityReport


def encode_sharded(
    cache: FeatureCache,
    encoder: Encoder,
    manifest: EntityManifest,
    entities: Sequence[str],
    modalities: Sequence[str],
    *,
    workers: int = 0,
    progress: bool = False,
) -> dict[str, ModalityReport] | None:
    """Encode ``entities`` into ``cache``; the reports on rank 0, ``None`` on other ranks."""
    world = distributed.world_size()
    if world == 1:
        return cache.update(
            encoder, manifest, entities, modalities, workers=workers, progress=progress
        )
    cache.encode_part(
        encoder,
        manifest,
        entities,
        modalities,
        rank=distributed.rank(),
        world=world,
        workers=workers,
        progress=progress and distributed.is_main(),
    )
    distributed.barrier()
    reports = None
    if distributed.is_main():
        reports = cache.update(encoder, manifest, entities, modalities, workers=workers)
    distributed.barrier()  # the cache is whole before any rank moves on
    return reports
