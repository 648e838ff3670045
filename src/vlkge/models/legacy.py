"""Checkpoints written before the entity representation was split into feature tables, fused
parts and the imaginary part (one module then held them all): their state-dict keys are moved
to where those parameters and buffers live now, so older run folders still load."""

from __future__ import annotations

from collections.abc import Callable


def rename_keys(state_dict: dict, prefix: str, rename: Callable[[str], str]) -> None:
    """Replace, in place, every key under ``prefix`` by ``prefix + rename(rest of the key)``."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        new = prefix + rename(key[len(prefix) :])
        if new != key:
            state_dict[new] = state_dict.pop(key)
