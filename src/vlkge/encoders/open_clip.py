"""open_clip encoders (optional extra: ``pip install 'vlkge[open_clip]'``).

Named ``open_clip:ARCH/PRETRAINED`` (``open_clip:ViT-B-32/laion2b_s34b_b79k``; PRETRAINED may
be a checkpoint file) or ``open_clip:hf-hub:ORG/REPO``. Features are ``model.encode_text`` /
``model.encode_image`` (projected, not normalised).
"""

from __future__ import annotations

import importlib

import torch
from torch import nn

from vlkge.encoders.base import Encoder, resolve_device
from vlkge.errors import VlkgeError, echo
from vlkge.terms import MODALITIES

PREFIX = "open_clip:"


def import_open_clip():
    try:
        return importlib.import_module("open_clip")
    except ImportError:
        raise VlkgeError(
            "open_clip encoders need the open_clip package: pip install open_clip_torch "
            "(or pip install 'vlkge[open_clip]')"
        ) from None


def parse_name(name: str) -> tuple[str, str | None]:
    """``open_clip:ARCH/PRETRAINED`` -> (ARCH, PRETRAINED); ``hf-hub:`` names pass whole."""
    spec = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    if spec.startswith("hf-hub:"):
        return spec, None
    arch, _, pretrained = spec.partition("/")
    if not arch:
        raise VlkgeError(
            f"open_clip encoder name {echo(name)} has no architecture (ARCH/PRETRAINED)"
        )
    return arch, pretrained or None


class OpenCLIPEncoder(Encoder):
    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        preprocess,
        *,
        name: str,
        device: str | torch.device | None = "cpu",
        batch_size: int = 64,
    ):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.model.requires_grad_(False)
        self.tokenizer = tokenizer
        self.preprocess = preprocess
        self.name = name
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls,
        name: str,
        *,
        device: str | torch.device | None = "cpu",
        batch_size: int = 64,
    ) -> OpenCLIPEncoder:
        open_clip = import_open_clip()
        arch, pretrained = parse_name(name)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=pretrained, device=str(resolve_device(device))
            )
            tokenizer = open_clip.get_tokenizer(arch)
        except (OSError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VlkgeError(
                f"could not load open_clip encoder {echo(name, quote=False)}: {echo(first, quote=False)}"
            ) from None
        return cls(model, tokenizer, preprocess, name=name, device=device, batch_size=batch_size)

    def module(self) -> nn.Module:
        return self.model

    def has(self, modality: str) -> bool:
        return modality in MODALITIES

    @property
    def text_width(self) -> int | None:
        return self._probe_width("text")

    @property
    def image_width(self) -> int | None:
        return self._probe_width("image")

    @property
    def text_preprocessing(self) -> str:
        length = getattr(self.tokenizer, "context_length", None)
        return f"open_clip tokenizer {type(self.tokenizer).__name__} context_length={length}"

    @property
    def image_preprocessing(self) -> str:
        return " ".join(repr(self.preprocess).split())

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return self.model.encode_text(self.tokenizer(texts).to(self.device))

    def _encode_pixel_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels.to(self.device))

    def image_transform(self):
        return _RGB(self.preprocess)


class _RGB:
    """Convert to RGB, then apply open_clip's transform (picklable)."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image) -> torch.Tensor:
        if getattr(image, "mode", "RGB") != "RGB":
            image = image.convert("RGB")
        return self.transform(image)
