"""The encoder interface: texts and images in, frozen feature vectors out.

Every encoder family (Hugging Face CLIP/SigLIP/BLIP, sentence-transformers, open_clip) wraps its
model behind :class:`Encoder`. Features come out as float32 CPU tensors, one row per input, in
the model's joint space where it has one. Encoding runs in eval mode without gradients and in
batches of ``batch_size``.

Images are split in two steps so that decoding and preprocessing can run in DataLoader worker
processes: :meth:`Encoder.image_transform` returns a small picklable callable turning one RGB
``PIL.Image`` into a pixel tensor, and :meth:`Encoder.encode_pixels` turns a stacked batch of
those into features.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import nn

from vlkge.errors import VlkgeError, echo
from vlkge.terms import MODALITIES, check_modality

ImageTransform = Callable[..., torch.Tensor]


@dataclass
class EntityFeature:
    """One entity's feature in one modality: the mean over its usable inputs (texts or images),
    how many were used, and why the others were not."""

    entity: str
    feature: torch.Tensor | None  # None when no input could be used
    used: int
    failures: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``auto`` -> CUDA when available, else CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError as exc:
        raise VlkgeError(f"unknown device {echo(device)}: {echo(exc, quote=False)}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VlkgeError(f"device {device} requested but CUDA is not available")
    return device


def weights_fingerprint(module: nn.Module) -> str:
    """sha256 over every state-dict entry (name, dtype, shape, bytes), in name order."""
    digest = hashlib.sha256()
    state = module.state_dict()
    for name in sorted(state):
        tensor = state[name].detach()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        flat = tensor.to("cpu").contiguous().reshape(-1)
        if flat.numel():
            digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def tokenizer_digest(tokenizer) -> str:
    """Short sha256 of a tokenizer's vocabulary and rules (not its call-time padding state)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)  # set and reset by each call with truncation/padding
        spec.pop("padding", None)
        source = json.dumps(spec, sort_keys=True)
    elif hasattr(tokenizer, "get_vocab"):
        source = json.dumps(tokenizer.get_vocab(), sort_keys=True)
    else:
        source = type(tokenizer).__name__
    return hashlib.sha256(source.encode()).hexdigest()[:16]


class Encoder(ABC):
    """A frozen text and/or image encoder.

    Subclasses set ``name``, ``device`` and ``batch_size`` and implement the ``_encode_*``
    hooks plus the width and preprocessing properties of the towers they have.
    """

    name: str
    device: torch.device
    batch_size: int = 64

    # --- description ---------------------------------------------------------------------
    @abstractmethod
    def module(self) -> nn.Module:
        """The torch module whose weights define the features (for the fingerprint)."""

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the weights; computed once."""
        return weights_fingerprint(self.module())

    @property
    def text_width(self) -> int | None:
        """Width of text features, or None without a text tower."""
        return None

    @property
    def image_width(self) -> int | None:
        """Width of image features, or None without an image tower."""
        return None

    @property
    def text_preprocessing(self) -> str:
        return ""

    @property
    def image_preprocessing(self) -> str:
        return ""

    def has(self, modality: str) -> bool:
        """Whether the encoder has a tower for ``modality`` (cheap: no forward pass)."""
        return self.width(modality) is not None

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if self.has(m))

    def width(self, modality: str) -> int | None:
        return self.text_width if check_modality(modality) == "text" else self.image_width

    def modality_preprocessing(self, modality: str) -> str:
        if modality == "text":
            return self.text_preprocessing
        return self.image_preprocessing

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {'+'.join(self.modalities)})"

    # --- encoding --------------------------------------------------------------------------
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """``FloatTensor[n, text_width]`` for ``n`` texts (batched, no grad)."""
        self._need("text")
        texts = list(texts)
        if not texts:
            return torch.zeros(0, self.text_width or 0)
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = self._encode_text_batch(texts[start : start + self.batch_size])
                out.append(batch.detach().float().cpu())
        return torch.cat(out)

    def encode_images(self, images: Sequence) -> torch.Tensor:
        """``FloatTensor[n, image_width]`` for ``n`` PIL images (preprocessed here)."""
        self._need("image")
        images = list(images)
        if not images:
            return torch.zeros(0, self.image_width or 0)
        transform = self.image_transform()
        return self.encode_pixels(torch.stack([transform(image) for image in images]))

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Features of a batch of preprocessed images (outputs of :meth:`image_transform`)."""
        self._need("image")
        out = []
        with torch.no_grad():
            for start in range(0, len(pixels), self.batch_size):
                batch = self._encode_pixel_batch(pixels[start : start + self.batch_size])
                out.append(batch.detach().float().cpu())
        if not out:
            return torch.zeros(0, self.image_width or 0)
        return torch.cat(out)

    def forward_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Features of one pixel batch; gradients flow where parameters require them."""
        return self._encode_pixel_batch(pixels)

    def image_transform(self) -> ImageTransform:
        """A picklable callable: RGB ``PIL.Image`` -> pixel tensor (usable in worker processes)."""
        self._need("image")
        raise NotImplementedError

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError

    def _probe_width(self, modality: str) -> int:
        """A tower's feature width, measured once with a dummy input."""
        widths = self.__dict__.setdefault("_probed_widths", {})
        if modality not in widths:
            with torch.no_grad():
                if modality == "text":
                    out = self._encode_text_batch(["a"])
                else:
                    from PIL import Image

                    pixels = self.image_transform()(Image.new("RGB", (8, 8)))
                    out = self._encode_pixel_batch(pixels[None])
            widths[modality] = int(out.shape[-1])
        return widths[modality]

    def _encode_pixel_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _need(self, modality: str) -> None:
        if not self.has(modality):
            raise VlkgeError(f"encoder {self.name} has no {modality} tower")
