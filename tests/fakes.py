"""A tiny deterministic vision-language encoder shared by the tests: letter counts of a text
and the mean colour of an image, each through a seeded linear map; and a writer of small
dataset folders with names, texts and images (one corrupt, one missing); random triples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from vlkge.encoders.base import Encoder


def random_triples(count: int, entities: int, relations: int, g: torch.Generator) -> torch.Tensor:
    """``[count, 3]`` uniform (head, relation, tail) ids, repeats allowed."""
    return torch.stack(
        [torch.randint(n, (count,), generator=g) for n in (entities, relations, entities)], 1
    )


class MeanColour:
    """Picklable image transform: an RGB image -> its mean colour in [0, 1]."""

    def __call__(self, image):
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32)).reshape(-1, 3)
        return pixels.mean(0) / 255


def letter_counts(texts) -> torch.Tensor:
    counts = torch.zeros(len(texts), 26)
    for i, text in enumerate(texts):
        for char in text.lower():
            if "a" <= char <= "z":
                counts[i, ord(char) - 97] += 1
    return counts


class LetterColourEncoder(Encoder):
    """Text features ``[text_width]`` from letter counts, image features ``[image_width]`` from
    the mean colour, each through a linear map seeded by ``seed``."""

    def __init__(self, seed: int = 0, text_width: int = 6, image_width: int = 5, batch_size=4):
        self.name, self.device, self.batch_size = "stub-vl", torch.device("cpu"), batch_size
        self.net = nn.ModuleDict(
            {"text": nn.Linear(26, text_width), "image": nn.Linear(3, image_width)}
        )
        generator = torch.Generator().manual_seed(seed)  # leaves torch's global RNG alone
        with torch.no_grad():
            for parameter in self.net.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=generator))

    def module(self):
        return self.net

    @property
    def text_width(self):
        return self.net["text"].out_features

    @property
    def image_width(self):
        return self.net["image"].out_features

    def _encode_text_batch(self, texts):
        return self.net["text"](letter_counts(texts))

    def image_transform(self):
        return MeanColour()

    def _encode_pixel_batch(self, pixels):
        return self.net["image"](pixels)


def write_graph(
    folder: Path,
    splits: dict[str, list[tuple[str, str, str]]],
    names: dict[str, str],
    texts: dict[str, str],
    colours: dict[str, tuple[int, int, int]],
    broken: str,
    missing: str,
) -> Path:
    """A dataset folder: the ``splits`` as ``<split>.txt``, ``entity2name.txt`` from ``names``,
    and a manifest of ``texts`` and of 40 x 30 PNGs in ``colours``, plus a corrupt image for
    entity ``broken`` and a missing one for ``missing``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        (folder / f"{split}.txt").write_text("".join("\t".join(r) + "\n" for r in rows))
    lines = "".join(f"{e}\t{name}\n" for e, name in names.items())
    (folder / "entity2name.txt").write_text(lines, encoding="utf-8")
    rows = [f"{e}\ttext\t{text}\n" for e, text in texts.items()]
    (folder / "img").mkdir(exist_ok=True)
    for entity, colour in colours.items():
        Image.new("RGB", (40, 30), colour).save(folder / "img" / f"{entity}.png")
        rows.append(f"{entity}\timage\timg/{entity}.png\n")
    (folder / "img" / "broken.jpg").write_bytes(b"not a picture at all")
    rows.append(f"{broken}\timage\timg/broken.jpg\n")
    rows.append(f"{missing}\timage\timg/missing.png\n")
    (folder / "manifest.tsv").write_text("".join(rows), encoding="utf-8")
    return folder
