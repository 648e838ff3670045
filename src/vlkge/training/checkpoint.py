"""Checkpoints written atomically: a temporary file in the same folder, then a rename.

A run killed mid-write leaves the previous checkpoint intact (its temporary file is removed by
the next save); a corrupt file, or one that does not fit the model, is reported in one line
with its path instead of a traceback.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from vlkge.errors import VlkgeError


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a killed process
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
