"""Hugging Face ``transformers`` dual encoders: CLIP, SigLIP, BLIP (and relatives).

Features are the projected joint-space vectors, exactly what ``model.get_text_features`` and
``model.get_image_features`` return (transformers 5 wraps them in an output object whose
``pooler_output`` holds them; transformers 4 returns the tensor). BLIP image-text retrieval
checkpoints (``BlipForImageTextRetrieval``, e.g. ``Salesforce/blip-itm-base-coco``, the BLIP
checkpoints trained for retrieval) have no ``get_*_features``; their features are the ITC
projections ``vision_proj(CLS)`` and ``text_proj(CLS)`` that the model compares with
``use_itm_head=False``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging

import torch
from torch import nn

from vlkge.encoders.base import Encoder, resolve_device, tokenizer_digest
from vlkge.errors import VlkgeError, echo

log = logging.getLogger(__name__)

# model_type values of dual encoders whose get_*_features give joint-space vectors
DUAL_ENCODERS = (
    "clip",
    "siglip",
    "blip",
    "chinese_clip",
    "altclip",
    "metaclip_2",
    "align",
)
ITM = "BlipForImageTextRetrieval"


def _features(output) -> torch.Tensor:
    """``get_*_features`` output -> tensor (transformers 5: ``pooler_output``; 4: tensor)."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    return output[1] if isinstance(output, tuple) else output[0]


class NotDualEncoder(VlkgeError):
    """A transformers checkpoint that is not a text-image dual encoder."""


class HFImageTransform:
    """A transformers image processor applied to one image; picklable for worker processes."""

    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, image) -> torch.Tensor:
        if getattr(image, "mode", "RGB") != "RGB":
            image = image.convert("RGB")
        pixels = self.image_processor(images=image, return_tensors="pt")["pixel_values"]
        return pixels[0]


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' load reports and progress bars; restore them afterwards."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


class HFEncoder(Encoder):
    """A transformers CLIP / SigLIP / BLIP model with its tokenizer and image processor."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer=None,
        image_processor=None,
        *,
        name: str | None = None,
        device: str | torch.device | None = "cpu",
        batch_size: int = 64,
        max_length: int | None = None,
    ):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.model.requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.batch_size = batch_size
        config = model.config
        self.model_type = getattr(config, "model_type", "")
        self.name = name or getattr(config, "_name_or_path", "") or type(model).__name__
        self.itm = type(model).__name__ == ITM
        if not self.itm and not (
            hasattr(model, "get_text_features") or hasattr(model, "get_image_features")
        ):
            raise VlkgeError(
                f"encoder {self.name}: {type(model).__name__} has no get_text_features / "
                "get_image_features (not a CLIP/SigLIP/BLIP dual encoder)"
            )
        self.siglip = self.model_type.startswith("siglip")
        text_config = getattr(config, "text_config", None)
        positions = getattr(text_config, "max_position_embeddings", None)
        limit = getattr(tokenizer, "model_max_length", None) if tokenizer is not None else None
        if limit is not None and limit > 100_000:  # "no limit" sentinel of tokenizers
            limit = None
        bounds = [n for n in (limit, positions) if n]
        self.max_length = max_length or (min(bounds) if bounds else None)

    # --- loading ---------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        device: str | torch.device | None = "cpu",
        batch_size: int = 64,
    ) -> HFEncoder:
        """Load model, tokenizer and image processor by hub id or local folder."""
        try:
            import transformers
        except ImportError:
            raise VlkgeError(
                "Hugging Face encoders need transformers: pip install 'vlkge[clip]'"
            ) from None
        where = str(name_or_path)
        try:
            with _quiet_transformers():
                config = transformers.AutoConfig.from_pretrained(where)
                architectures = getattr(config, "architectures", None) or []
                model_type = getattr(config, "model_type", "")
                if model_type not in DUAL_ENCODERS and ITM not in architectures:
                    raise NotDualEncoder(
                        f"encoder {echo(where, quote=False)}: model type {echo(model_type)} is not a dual encoder "
                        f"(known: {', '.join(DUAL_ENCODERS)})"
                    )
                if ITM in architectures:
                    model_cls = transformers.BlipForImageTextRetrieval
                else:
                    model_cls = transformers.AutoModel
                model, info = model_cls.from_pretrained(where, output_loading_info=True)
                tokenizer, image_processor = _load_preprocessors(transformers, where)
        except (OSError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VlkgeError(
                f"could not load encoder {echo(where, quote=False)}: {echo(first, quote=False)} (offline? give a local folder, or set HF_HUB_OFFLINE=1 to use the local Hugging Face cache only)"
            ) from None
        missing = [k for k in info.get("missing_keys", []) if not k.endswith("position_ids")]
        if missing:
            hint = (
                "; for BLIP use an image-text retrieval checkpoint such as "
                "Salesforce/blip-itm-base-coco"
                if getattr(config, "model_type", "") == "blip"
                else ""
            )
            raise VlkgeError(
                f"encoder {echo(where, quote=False)}: the checkpoint lacks {len(missing)} weights of "
                f"{type(model).__name__} (e.g. {sorted(missing)[0]}), it is not a dual "
                f"encoder checkpoint of that class{hint}"
            )
        return cls(
            model,
            tokenizer,
            image_processor,
            name=where,
            device=device,
            batch_size=batch_size,
        )

    # --- description -----------------------------------------------------------------------
    def module(self) -> nn.Module:
        return self.model

    def has(self, modality: str) -> bool:
        return (self.tokenizer if modality == "text" else self.image_processor) is not None

    @property
    def text_width(self) -> int | None:
        return self._probe_width("text") if self.tokenizer is not None else None

    @property
    def image_width(self) -> int | None:
        return self._probe_width("image") if self.image_processor is not None else None

    @property
    def text_preprocessing(self) -> str:
        tok = self.tokenizer
        if tok is None:
            return ""
        digest = tokenizer_digest(tok)
        padding = "max_length" if self.siglip else "longest"
        return (
            f"{type(tok).__name__} sha256:{digest} vocab={len(tok)} "
            f"max_length={self.max_length} padding={padding} truncation"
        )

    @property
    def image_preprocessing(self) -> str:
        if self.image_processor is None:
            return ""
        settings = self.image_processor.to_dict()
        return f"{type(self.image_processor).__name__} " + json.dumps(
            settings, sort_keys=True, default=str
        )

    # --- encoding --------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Token ids (and attention mask) as the text tower takes them."""
        if self.siglip:  # SigLIP was trained on max_length padding and pools the last token
            kwargs = {"padding": "max_length", "max_length": self.max_length or 64}
        else:
            kwargs = {"padding": True, "max_length": self.max_length}
        batch = self.tokenizer(texts, truncation=True, return_tensors="pt", **kwargs)
        return {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        return self.forward_tokens(self.tokenize(texts))

    def forward_tokens(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Text features of tokenized inputs (gradients flow where parameters require them)."""
        inputs = {k: v.to(self.device) for k, v in tokens.items()}
        if self.itm:
            hidden = self.model.text_encoder(**inputs, return_dict=True).last_hidden_state
            return self.model.text_proj(hidden[:, 0, :])
        accepted = inspect.signature(self.model.get_text_features).parameters
        inputs = {k: v for k, v in inputs.items() if k in accepted}
        return _features(self.model.get_text_features(**inputs))

    def _encode_pixel_batch(self, pixels: torch.Tensor) -> torch.Tensor:
        dtype = next(self.model.parameters()).dtype
        pixels = pixels.to(self.device, dtype=dtype)
        if self.itm:
            hidden = self.model.vision_model(pixel_values=pixels, return_dict=True)
            return self.model.vision_proj(hidden.last_hidden_state[:, 0, :])
        return _features(self.model.get_image_features(pixel_values=pixels))

    def image_transform(self) -> HFImageTransform:
        self._need("image")
        return HFImageTransform(self.image_processor)


def _load_preprocessors(transformers, where: str):
    """(tokenizer, image processor) of a checkpoint: its processor, else the separate parts."""
    tokenizer = image_processor = None
    try:
        processor = transformers.AutoProcessor.from_pretrained(where)
        tokenizer = getattr(processor, "tokenizer", None)
        image_processor = getattr(processor, "image_processor", None)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    if tokenizer is None:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            tokenizer = transformers.AutoTokenizer.from_pretrained(where)
    if image_processor is None:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            image_processor = transformers.AutoImageProcessor.from_pretrained(where)
    if tokenizer is None and image_processor is None:
        raise OSError(f"{where} has neither a tokenizer nor an image processor")
    return tokenizer, image_processor
