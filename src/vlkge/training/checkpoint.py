"""Checkpoints written atomically (:func:`vlkge.files.atomic_write`).

A run killed mid-write, or a full disk, leaves the previous checkpoint intact (a killed
write's temporary file is removed by the next save); a corrupt file, or one that does not fit
the model, is reported in one line with its path instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vlkge.errors import VlkgeError
from vlkge.files import atomic_write


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    with atomic_write(path, binary=True) as handle:
        torch.save(payload, handle)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise VlkgeError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise VlkgeError(f"{path}: unreadable checkpoint ({_one_line(exc)})") from None


def restore_model(model: torch.nn.Module, state: dict[str, Any], path: str | Path) -> None:
    """Load ``state`` (a state dict read from ``path``) into ``model``; a checkpoint written
    for another model (changed config or feature widths) is a one-line error."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise VlkgeError(
            f"{path}: does not fit the model built from the run's config and features "
            f"({_one_line(exc)})"
        ) from None


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"
