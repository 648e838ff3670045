"""Input fingerprints: what an entity's cached row was computed from.

An entity's texts are fingerprinted by the sha256 of the list, its images by the sha256 of
their files' bytes (in any order); a row is reused while its fingerprint is unchanged
(:mod:`vlkge.encoders.cache`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from vlkge.data.manifest import EntityManifest
from vlkge.untrusted import check_regular_file

HASH_THREADS = 4  # the fewest threads that hash image files (reading them is I/O-bound)


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


def image_fingerprints(
    items: list[tuple[str, list[str]]], threads: int, progress: bool
) -> dict[str, str]:
    """Each entity's :func:`images_fingerprint`, its files hashed in ``threads`` threads."""
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


def entity_inputs(
    manifest: EntityManifest,
    entities: Sequence[str],
    modality: str,
    workers: int = 0,
    progress: bool = False,
) -> tuple[list[tuple[str, list[str]]], dict[str, str]]:
    """The ``entities`` that have inputs of ``modality``, each with its inputs, and their
    fingerprints (image files hashed in ``workers`` threads, at least :data:`HASH_THREADS`)."""
    source = manifest.texts if modality == "text" else manifest.images
    items = [(e, list(source[e])) for e in entities if source.get(e)]
    if modality == "text":
        return items, {e: text_fingerprint(texts) for e, texts in items}
    return items, image_fingerprints(items, max(workers, HASH_THREADS), progress)
