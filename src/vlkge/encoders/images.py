"""Decode and preprocess images in DataLoader worker processes; average them per entity.

A missing, unreadable, truncated, corrupt or huge image, or a path that is not a regular file (a
FIFO or a device would block or never end), is skipped and reported with its entity, never fatal: an entity keeps the average of the images that did load, and has no image feature
when none did. "Huge" is more pixels than ``MAX_PIXELS``, checked from the file's header before
anything is decoded, so a decompression bomb never reaches memory.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from vlkge.encoders.base import Encoder, EntityFeature
from vlkge.untrusted import NotARegularFile, check_regular_file

log = logging.getLogger(__name__)

MAX_PIXELS = 89_478_485  # PIL's own decompression-bomb threshold (about 270 MB as RGB)


class ImageTooLarge(ValueError):
    """An image whose header declares more than ``MAX_PIXELS`` pixels."""


def load_image(path: str, transform: Callable) -> torch.Tensor:
    """Open ``path`` with PIL, convert to RGB and apply ``transform``."""
    from PIL import Image

    check_regular_file(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # palette/EXIF chatter from PIL
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageTooLarge(f"{width} x {height} pixels, more than {MAX_PIXELS:,}")
            image.load()
            rgb = image.convert("RGB")
    pixels = transform(rgb)
    if not isinstance(pixels, torch.Tensor):
        pixels = torch.as_tensor(pixels)
    return pixels


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "missing"
    if isinstance(exc, (IsADirectoryError, PermissionError)):
        return f"unreadable ({type(exc).__name__})"
    if isinstance(exc, NotARegularFile):
        return "unreadable (not a regular file)"
    if isinstance(exc, ImageTooLarge):
        return f"too large ({exc})"
    if type(exc).__name__ == "DecompressionBombError":  # PIL's check, above 2 x its limit
        return "too large (a decompression bomb)"
    text = " ".join(str(exc).split())[:200]
    return (
        f"corrupt or unreadable ({type(exc).__name__}: {text})"
        if text
        else (f"corrupt or unreadable ({type(exc).__name__})")
    )


class ImageItems(Dataset):
    """``(item index, path)`` -> ``(item index, pixels or None, failure reason or None)``."""

    def __init__(self, paths: Sequence[str], transform: Callable):
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            return index, load_image(self.paths[index], self.transform), None
        except Exception as exc:  # any failure is reported, never fatal
            return index, None, failure_reason(exc)


def collate(batch):
    """Stack the loaded images; pass the failures through."""
    ok = [(i, pixels) for i, pixels, _ in batch if pixels is not None]
    failed = [(i, reason) for i, pixels, reason in batch if pixels is None]
    pixels = torch.stack([p for _, p in ok]) if ok else None
    return [i for i, _ in ok], pixels, failed


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


# Workers are started from a clean server process, never forked from this one: a fork after
# torch has started its thread pools can inherit a lock held by a thread that does not exist in
# the child, which then hangs on its first torch call (docs/scaling.md, "Processes").
WORKER_CONTEXT = "forkserver"


def image_batches(
    paths: Sequence[str],
    transform: Callable,
    batch_size: int = 64,
    workers: int = 0,
):
    """A DataLoader yielding ``(item indices, pixel batch or None, [(item, reason)])`` in order."""
    return DataLoader(
        ImageItems(paths, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=_worker_init if workers else None,
        multiprocessing_context=WORKER_CONTEXT if workers else None,
        persistent_workers=False,
    )


def encode_entity_images(
    encoder: Encoder,
    entity_images: Sequence[tuple[str, Sequence[str]]],
    *,
    batch_size: int = 64,
    workers: int = 0,
    progress: bool = False,
) -> Iterator[EntityFeature]:
    """Average image features per entity, yielding each entity once all its images are done.

    Entities come out in the order given; each entity's images are decoded in worker processes
    (``workers`` > 0) and encoded in batches of ``batch_size``.
    """
    owners: list[int] = []
    paths: list[str] = []
    for position, (_, images) in enumerate(entity_images):
        for path in images:
            owners.append(position)
            paths.append(str(path))
    remaining = [len(images) for _, images in entity_images]
    sums: list[torch.Tensor | None] = [None] * len(entity_images)
    used = [0] * len(entity_images)
    failures: list[list[tuple[str, str]]] = [[] for _ in entity_images]
    next_out = 0

    def finished() -> Iterator[EntityFeature]:
        nonlocal next_out
        while next_out < len(entity_images) and remaining[next_out] == 0:
            entity = entity_images[next_out][0]
            total = sums[next_out]
            feature = total / used[next_out] if total is not None else None
            yield EntityFeature(entity, feature, used[next_out], failures[next_out])
            sums[next_out] = None  # free memory early
            next_out += 1

    yield from finished()
    if not paths:
        return
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(paths), desc="images", unit="img", leave=False)
    try:
        loader = image_batches(paths, encoder.image_transform(), batch_size, workers)
        for items, pixels, failed in loader:
            if pixels is not None:
                features = encoder.encode_pixels(pixels)
                for item, feature in zip(items, features, strict=True):
                    owner = owners[item]
                    sums[owner] = feature.clone() if sums[owner] is None else sums[owner] + feature
                    used[owner] += 1
                    remaining[owner] -= 1
            for item, reason in failed:
                owner = owners[item]
                failures[owner].append((paths[item], reason))
                remaining[owner] -= 1
                log.debug("image %s of %s: %s", paths[item], entity_images[owner][0], reason)
            if bar is not None:
                bar.update(len(items) + len(failed))
            yield from finished()
    finally:
        if bar is not None:
            bar.close()
