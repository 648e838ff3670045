"""Tiny randomly initialised CLIP / BLIP / SigLIP models with offline tokenizers and images,
and a stub encoder that counts what it encodes."""

from __future__ import annotations

import string
import time
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
PIL = pytest.importorskip("PIL")

from fakes import LetterColourEncoder  # noqa: E402
from PIL import Image  # noqa: E402
from tiny_models import (  # noqa: E402
    IMAGE_SIZE,
    TOWER,
    clip_tokenizer,
    tiny_clip,  # noqa: F401  (the encoder tests import it from here)
    tiny_clip_folder,
)


def bert_tokenizer():
    """A character-level WordPiece (BERT) tokenizer for BLIP."""
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])}
    for char in string.ascii_lowercase + string.digits + string.punctuation:
        vocab[char] = len(vocab)
        vocab["##" + char] = len(vocab)
    return transformers.BertTokenizer(vocab=vocab)


def tiny_blip(retrieval: bool = False):
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    torch.manual_seed(1)
    tokenizer = bert_tokenizer()
    config = transformers.BlipConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            max_position_embeddings=40,
            encoder_hidden_size=32,
            pad_token_id=0,
            bos_token_id=2,
            sep_token_id=3,
            **TOWER,
        ),
        vision_config=dict(image_size=IMAGE_SIZE, patch_size=6, **TOWER),
        projection_dim=24,
        image_text_hidden_size=20,
    )
    cls = transformers.BlipForImageTextRetrieval if retrieval else transformers.BlipModel
    processor = BlipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return cls(config).eval(), tokenizer, processor


def tiny_siglip():
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    torch.manual_seed(2)
    tokenizer = clip_tokenizer()
    config = transformers.SiglipConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            **TOWER,
        ),
        vision_config=dict(image_size=IMAGE_SIZE, patch_size=6, **TOWER),
    )
    processor = SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return transformers.SiglipModel(config).eval(), tokenizer, processor


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    """A tiny CLIP checkpoint folder (model, tokenizer, image processor)."""
    return tiny_clip_folder(tmp_path_factory.mktemp("tiny-clip"))


def random_image(seed: int, size=(41, 37)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture
def write_images(tmp_path):
    """``write_images(n, fmt="PNG")`` -> list of paths to small random images."""

    def write(n: int, fmt: str = "PNG", start: int = 0, folder: Path | None = None):
        folder = folder or tmp_path / "img"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(start, start + n):
            path = folder / f"im{i}.{fmt.lower()}"
            random_image(i).save(path, format=fmt)
            paths.append(path)
        return paths

    return write


class StubEncoder(LetterColourEncoder):
    """The shared letter/colour stub, counting what it encodes; ``delay`` seconds per batch
    make runs overlap in time."""

    def __init__(self, delay: float = 0.0):
        super().__init__(seed=0)
        self.name, self.delay = "stub", delay
        self.texts = self.images = 0

    def _encode_text_batch(self, texts):
        time.sleep(self.delay)
        self.texts += len(texts)
        return super()._encode_text_batch(texts)

    def _encode_pixel_batch(self, pixels):
        time.sleep(self.delay)
        self.images += len(pixels)
        return super()._encode_pixel_batch(pixels)
