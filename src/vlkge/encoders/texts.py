"""Encode entity texts in large calls and average them per entity (images: :mod:`.images`).

An entity with several texts (a gloss and a name, several descriptions) gets the mean of their
features. Texts of ``chunk_size`` entities go to the encoder in one call, which batches them by
its ``batch_size``; a text never fails the way an image file can.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from vlkge.encoders.base import Encoder, EntityFeature


def encode_entity_texts(
    encoder: Encoder,
    entity_texts: Sequence[tuple[str, Sequence[str]]],
    *,
    chunk_size: int,
    progress: bool = False,
) -> Iterator[EntityFeature]:
    """The mean text feature of each entity, in the order given, a chunk of ``chunk_size``
    entities at a time."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(entity_texts), desc="texts", unit="entity", leave=False)
    try:
        for start in range(0, len(entity_texts), chunk_size):
            chunk = entity_texts[start : start + chunk_size]
            vectors = encoder.encode_texts([t for _, texts in chunk for t in texts])
            row = 0
            for entity, texts in chunk:
                count = len(texts)
                yield EntityFeature(entity, vectors[row : row + count].mean(0), count)
                row += count
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
