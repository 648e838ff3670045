"""Checkpoints written atomically (:func:`vlkge.files.atomic_write`).

A run killed mid-write, or a full disk, leaves the previous checkpoint intact (a killed
write's temporary file is removed by the next save); a corrupt file, one that lacks an entry, or
one that does not fit the model, is reported in one line with its path instead of a traceback.

:class:`CheckpointWriter` writes them on a background thread, so that training goes on while a
file is written and synced.

Checkpoints hold only tensors and plain Python values (numbers, strings, lists, tuples, dicts,
None) and are read weights-only: a file that needs anything else to load (a pickled object,
which could run code) is refused, naming the file and the object.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from vlkge.errors import VlkgeError, echo
from vlkge.files import atomic_write
from vlkge.untrusted import load_torch

# What a checkpoint must hold, per use: entry -> its type, a tuple of types, or the entries of a
# nested mapping; an entry that may be None may also be absent (written by earlier versions).
Entries = Mapping[str, Any]
MODEL_ENTRIES: Entries = {"model": Mapping}  # evaluation, prediction, export: the weights
RESUME_ENTRIES: Entries = {  # train --resume: everything Trainer.state() writes
    "epoch": int,
    "model": Mapping,
    "optimizer": {"state": Mapping, "param_groups": list},
    "generator": torch.Tensor,
    "torch_rng": torch.Tensor,
    "cuda_rng": (list, type(None)),
    "best": {"metric": (int, float), "epoch": int},
    "partial": (
        {"generator": torch.Tensor, "batches": int, "loss": (int, float), "n": int},
        type(None),
    ),
    "scaler": (Mapping, type(None)),
}


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    with atomic_write(path, binary=True) as handle:
        torch.save(payload, handle)


class CheckpointWriter:
    """Checkpoints written in the order submitted, each on a thread of its own that first waits
    for the one before, while the caller goes on: an epoch's ``best.pt`` and ``last.pt`` of a
    40-80 MB model took 0.1-0.4 s of each epoch's wall time synchronously (docs/results.md,
    "RotatE"). What is submitted is copied first (tensors cloned on their device), so a file
    holds the state of the moment it was submitted. At most one write waits behind the running
    one, which bounds the copies held to two. A write's error (a full disk) is raised by the
    next :meth:`submit` or by :meth:`wait`; the interpreter waits for writes still running
    when it exits, so an ended run's files are whole.
    """

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None  # the first failed write's, not raised yet

    def submit(self, path: str | Path, payload: dict[str, Any]) -> None:
        self._join(keep=1)
        self._raise()
        previous = self._threads[-1] if self._threads else None
        thread = threading.Thread(
            target=self._write, args=(previous, path, _copied(payload)), name="vlkge-checkpoint"
        )
        thread.start()
        self._threads.append(thread)

    def wait(self) -> None:
        """Return once every submitted file is written; raise the first failed write's error."""
        self._join(keep=0)
        self._raise()

    def settle(self) -> None:
        """Wait for every write, its errors dropped: for a message about the files on disk
        written while another error is raised."""
        self._join(keep=0)
        self._error = None

    def _join(self, keep: int) -> None:
        while len(self._threads) > keep:
            self._threads.pop(0).join()

    def _raise(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _write(self, previous: threading.Thread | None, path, payload) -> None:
        if previous is not None:
            previous.join()  # one write at a time: no two threads set _error at once
        try:
            save_checkpoint(path, payload)
        except BaseException as exc:  # raised in the caller's thread by _raise
            self._error = self._error or exc


def _copied(value: Any) -> Any:
    """``value`` with every tensor cloned (dicts, lists and tuples copied around them)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, Mapping):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_copied(item) for item in value)
    return value


def load_checkpoint(path: str | Path, entries: Entries | None = None) -> dict[str, Any]:
    """Read ``path`` weights-only and check that it holds ``entries``
    (:data:`MODEL_ENTRIES`, :data:`RESUME_ENTRIES`); every failure is one line naming the file
    (and the entry)."""
    path = Path(path)
    if not path.is_file():
        raise VlkgeError(f"{path}: checkpoint not found")
    try:
        state = load_torch(path)
    except VlkgeError:  # refused: it needs an object that could run code
        raise
    except Exception as exc:  # torch raises many types for a damaged file
        raise VlkgeError(f"{path}: unreadable checkpoint ({_one_line(exc)})") from None
    if not isinstance(state, dict):
        raise VlkgeError(f"{path}: not a checkpoint (holds a {type(state).__name__})")
    _check(path, state, entries or {}, "")
    if isinstance(state.get("model"), Mapping):
        for key, value in state["model"].items():
            if not isinstance(value, torch.Tensor):
                raise VlkgeError(
                    f"{path}: damaged checkpoint: 'model.{key}' is a {type(value).__name__}, "
                    "not a tensor"
                )
    return state


def _check(path: Path, state: Mapping, entries: Entries, prefix: str) -> None:
    """One line naming the first of ``entries`` that ``state`` lacks or holds with another type
    (so that a damaged checkpoint never surfaces as a KeyError far from its file)."""
    for key, kinds in entries.items():
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        name = f"{prefix}{key}"
        if key not in state:
            if type(None) in kinds:
                continue
            raise VlkgeError(f"{path}: damaged checkpoint: no {name!r} entry")
        value = state[key]
        nested = next((k for k in kinds if isinstance(k, Mapping)), None)
        if nested is not None and isinstance(value, Mapping):
            _check(path, value, nested, f"{name}.")
        elif not isinstance(value, tuple(k for k in kinds if isinstance(k, type))):
            raise VlkgeError(f"{path}: damaged checkpoint: {name!r} is a {type(value).__name__}")


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load the weights of the checkpoint at ``path`` into ``model`` (the tables of a run
    with sharded tables assembled from its shard files)."""
    restore_model(model, whole_model(path, load_checkpoint(path, MODEL_ENTRIES)), path)


def shard_file(path: Path, tag: str, rank: int, world: int) -> Path:
    """The file beside the manifest ``path`` holding rank ``rank``'s rows of sharded tables
    (``vlkge.training.sharded``); ``tag`` tells successive saves apart."""
    return path.with_name(f"{path.stem}.{tag}.shard{rank}of{world}{path.suffix}")


def whole_model(path: str | Path, state: dict[str, Any]) -> dict[str, Any]:
    """The model state of checkpoint ``state`` read from ``path``: with a ``shards`` entry (a
    manifest), each sharded table is the concatenation of its rows in the shard files, in
    rank order."""
    shards = state.get("shards")
    if shards is None:
        return state["model"]
    model = dict(state["model"])
    if any(Path(name).name != name for name in shards["files"]):
        raise VlkgeError(f"{path}: damaged checkpoint: a shard file outside its folder")
    parts = [
        load_checkpoint(Path(path).parent / name, MODEL_ENTRIES)["model"]
        for name in shards["files"]
    ]
    for key in shards["keys"]:
        try:
            model[key] = torch.cat([part[key] for part in parts])
        except (KeyError, RuntimeError):
            raise VlkgeError(
                f"{path}: damaged checkpoint: the shards of {key!r} do not fit"
            ) from None
    return model


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


@contextmanager
def restoring(path: str | Path) -> Iterator[None]:
    """Report training state read from ``path`` that does not fit (an optimiser state of other
    parameters, a generator state of another size) in one line naming the file."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        raise VlkgeError(f"{path}: cannot restore the training state ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    """``exc`` named by its type, its message on one line as :func:`echo` cuts it."""
    return f"{type(exc).__name__}: {echo(exc, quote=False)}"
