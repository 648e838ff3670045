"""A tiny deterministic vision-language encoder shared by the tests: letter counts of a text
and the mean colour of an image, each through a seeded linear map."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vlkge.encoders.base import Encoder


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
