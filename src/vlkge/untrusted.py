"""Reading files that vlkge did not write: nothing in them runs code, and nothing that is not a
regular file is opened.

A pickle can name any Python callable and have it called while loading, so ``pickle.load`` and
``torch.load(weights_only=False)`` run whatever a crafted file asks for. Here:

- pickles (the reference implementation's feature files) go through :class:`RestrictedUnpickler`,
  which rebuilds numpy arrays and scalars, torch tensors (their storage read weights-only) and
  plain Python values (lists, dicts, tuples, sets, strings, bytes, numbers,
  ``collections.OrderedDict``) and refuses every other global;
- torch files (checkpoints, ``.pt`` features) load with ``weights_only=True``: tensors and plain
  Python values only;
- a FIFO, socket or device file (``/dev/zero``) named where a file is expected is refused before
  it is opened, since reading it can block forever or never end.

A refused global is a one-line :class:`~vlkge.errors.DataError` naming the file and the global.
"""

from __future__ import annotations

import collections
import errno
import io
import os
import pickle
import re
import stat
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:  # numpy >= 2; its pickles name numpy._core, those of numpy 1.x numpy.core
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

from vlkge.errors import DataError


class NotARegularFile(OSError):
    """A FIFO, socket or device where a file was expected."""


def check_regular_file(path: str | os.PathLike) -> None:
    """Raise unless ``path`` (symbolic links followed) is a regular file, without opening it:
    ``FileNotFoundError`` when it is missing, ``IsADirectoryError`` for a folder,
    :class:`NotARegularFile` for anything else."""
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not stat.S_ISREG(mode):
        raise NotARegularFile(f"{path}: not a regular file")


# --- pickles ---------------------------------------------------------------------------------
class RefusedGlobal(pickle.UnpicklingError):
    """A file asked for a global outside the allowed ones; the message names it."""


def _latin1(text: str, encoding: str) -> bytes:
    """Pickle protocols 0-2 spell a ``bytes`` value as ``_codecs.encode(text, "latin1")``;
    only that codec is let through."""
    if encoding not in ("latin1", "latin-1"):
        raise RefusedGlobal(f"_codecs.encode with codec {encoding!r}")
    return text.encode("latin1")


def _storage_from_bytes(data: bytes) -> Any:
    """A tensor's storage in a pickle: what ``torch.storage._load_from_bytes`` reads, but
    weights-only (torch's own reads it with ``weights_only=False``)."""
    return _torch_load(io.BytesIO(data))


def _allowed() -> dict[tuple[str, str], Any]:
    """(module, name) -> object, for every global a pickle of arrays, tensors and plain values
    needs."""
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
        ("_codecs", "encode"): _latin1,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    for core in ("numpy.core", "numpy._core"):  # written by numpy 1.x and 2.x
        allowed[(f"{core}.multiarray", "_reconstruct")] = _multiarray._reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = _multiarray.scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = _numeric._frombuffer  # protocol 5
    for module in ("builtins", "__builtin__"):  # protocol 2 names builtins __builtin__
        for kind in (set, frozenset, complex, bytearray):
            allowed[(module, kind.__name__)] = kind
    for name, value in vars(np).items():  # scalar types: numpy.float32, numpy.int64, ...
        if isinstance(value, type) and issubclass(value, np.generic):
            allowed[("numpy", name)] = value
    return allowed


ALLOWED_GLOBALS = _allowed()


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS`: numpy arrays and scalars, torch
    tensors (their storage read weights-only) and plain Python values come back; a pickle
    naming anything else (``os.system``, ``builtins.eval``, a class of its own) raises
    :class:`RefusedGlobal` before anything is called."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None


def load_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; a refused global is a one-line
    :class:`~vlkge.errors.DataError` naming the file and the global."""
    with open(path, "rb") as handle:
        try:
            return RestrictedUnpickler(handle).load()
        except RefusedGlobal as exc:
            raise _refused(path, exc) from None


# --- torch files ----------------------------------------------------------------------------
# how torch's weights-only unpickler names the global it refused (torch 2.1 to 2.x)
_TORCH_REFUSED = re.compile(r"(?:GLOBAL|Unsupported class) ([\w.]+)")


def load_torch(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU; a file that needs any other global
    is a one-line :class:`~vlkge.errors.DataError` naming the file and the global."""
    try:
        return _torch_load(path)
    except RefusedGlobal as exc:
        raise _refused(path, exc) from None


def _torch_load(source: str | Path | io.BytesIO) -> Any:
    """Weights-only ``torch.load`` onto the CPU: :class:`RefusedGlobal` names a global torch
    refused; other weights-only failures (a damaged file) raise ``pickle.UnpicklingError``
    without torch's advice to load the file unsafely."""
    try:
        with warnings.catch_warnings():  # a pickle that is not torch's is refused, not warned of
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Weights only load failed" not in text:
            raise
        refused = _TORCH_REFUSED.search(text)
        if refused is not None:
            raise RefusedGlobal(refused.group(1)) from None
        detail = text.split("WeightsUnpickler error:")[-1].split("Check the documentation")[0]
        raise pickle.UnpicklingError(" ".join(detail.split())) from None


def _refused(path: str | Path, exc: RefusedGlobal) -> DataError:
    return DataError(
        path,
        None,
        f"refused to load {exc}, which could run code: vlkge loads only arrays, tensors and "
        "plain Python values from pickles and torch files",
    )
