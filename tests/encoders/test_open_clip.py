"""open_clip is optional: a clear error without it, and the wrapper on a stand-in module."""

from __future__ import annotations

import builtins
import sys
import types

import numpy as np
import pytest
import torch
from conftest import random_image
from torch import nn

from vlkge.encoders import build_encoder, guess_kind
from vlkge.encoders.open_clip import OpenCLIPEncoder, parse_name
from vlkge.errors import VlkgeError


def test_missing_open_clip_is_a_clear_error(monkeypatch):
    real_import = builtins.__import__

    def no_open_clip(name, *args, **kwargs):
        if name == "open_clip":
            raise ImportError("no open_clip")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "open_clip", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_open_clip)
    with pytest.raises(VlkgeError, match="pip install open_clip_torch"):
        build_encoder("open_clip:ViT-B-32/laion2b_s34b_b79k")


def test_parse_name():
    assert parse_name("open_clip:ViT-B-32/laion2b_s34b_b79k") == ("ViT-B-32", "laion2b_s34b_b79k")
    assert parse_name("open_clip:ViT-B-32") == ("ViT-B-32", None)
    assert parse_name("open_clip:hf-hub:laion/CLIP-ViT-B-32") == (
        "hf-hub:laion/CLIP-ViT-B-32",
        None,
    )
    assert guess_kind("open_clip:RN50/openai") == "open_clip"


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.text = nn.EmbeddingBag(300, 12)
        self.image = nn.Linear(3 * 8 * 8, 12)

    def encode_text(self, tokens):
        return self.text(tokens)

    def encode_image(self, pixels):
        return self.image(pixels.flatten(1))


def _to_tensor(image):
    pixels = np.asarray(image.resize((8, 8)), dtype=np.float32) / 255
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


def test_wrapper_on_a_stand_in_module(monkeypatch):
    fake = types.ModuleType("open_clip")
    fake.create_model_and_transforms = lambda arch, pretrained=None, device="cpu": (
        _Tiny(),
        None,
        _to_tensor,
    )
    fake.get_tokenizer = lambda arch: (
        lambda texts: torch.tensor([[ord(c) % 300 for c in (t + " " * 8)[:8]] for t in texts])
    )
    monkeypatch.setitem(sys.modules, "open_clip", fake)
    encoder = build_encoder("open_clip:Tiny/none")
    assert isinstance(encoder, OpenCLIPEncoder)
    assert encoder.text_width == 12 and encoder.image_width == 12
    texts = encoder.encode_texts(["a cat", "a dog"])
    model = encoder.model
    torch.testing.assert_close(
        texts, model.encode_text(fake.get_tokenizer("x")(["a cat", "a dog"]))
    )
    image = random_image(0)
    torch.testing.assert_close(
        encoder.encode_images([image]), model.encode_image(_to_tensor(image)[None])
    )
