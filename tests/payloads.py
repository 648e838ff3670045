"""Crafted files whose loading runs code: loading one with ``pickle.load``,
``np.load(allow_pickle=True)`` or ``torch.load(weights_only=False)`` creates a marker file."""

from __future__ import annotations

import os
import pickle
import shlex
from pathlib import Path

import numpy as np
import torch

# how the refusals name os.system: posix.system on Linux and macOS
SYSTEM = f"{os.system.__module__}.system"


class RunsCode:
    """Unpickling this calls ``os.system("touch <marker>")``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def write_payload(path: Path, marker: Path) -> Path:
    """A feature file of ``path``'s kind (.pkl/.pickle, .npy/.npz, .pt/.pth) holding the
    payload (in an object array for numpy)."""
    payload = {"a": RunsCode(marker)}
    array = np.empty((), dtype=object)
    array[()] = payload
    if path.suffix in (".pkl", ".pickle"):
        path.write_bytes(pickle.dumps(payload))
    elif path.suffix == ".npy":
        np.save(path, array, allow_pickle=True)
    elif path.suffix == ".npz":
        np.savez(path, a=array)
    else:
        torch.save(payload, path)
    return path
