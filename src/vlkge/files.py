"""Files of a run written whole or not at all, and a full disk reported in one line.

:func:`atomic_write` writes beside the target (``.NAME.PID.tmp``), flushes to disk and renames
over it: a process killed mid-write, or a disk that fills up, leaves the previous version
intact. A full disk (``ENOSPC``, or a quota) becomes :class:`DiskFull`, a one-line error that
names the file, instead of an ``OSError`` that often names none.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from vlkge.errors import VlkgeError

FULL_DISK = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class DiskFull(VlkgeError):
    """A write failed because the disk (or the user's quota) is full."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(f"{path}: not written, the disk is full (no space left on device)")
        self.path = Path(path)


def raise_if_disk_full(exc: BaseException, path: str | os.PathLike) -> None:
    """Turn ``exc`` into :class:`DiskFull` for ``path`` when a full disk caused it."""
    if isinstance(exc, OSError) and exc.errno in FULL_DISK:
        raise DiskFull(path) from None


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, binary: bool = False) -> Iterator[IO]:
    """A handle whose content replaces ``path`` when the block ends without an error.

    Temporary files of this target left by a killed process are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb" if binary else "w", encoding=None if binary else "utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        raise_if_disk_full(exc, path)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (UTF-8)."""
    with atomic_write(path) as handle:
        handle.write(text)
