"""Keep large CPU buffers in the process heap instead of fresh ``mmap`` regions.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a new ``mmap``
and returns it to the system on free, so a training step that allocates a ``[batch,
entities]`` score matrix pays a page fault for every 4 KiB of it, every step (the time this
costs on WN18RR is in docs/scaling.md, "CPU allocator"). Turning ``mmap`` off for the heap and
never trimming it lets freed buffers be reused. Peak memory is unchanged; memory freed late in
a run is kept by the process until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_done = False


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """glibc, loaded once, or ``None`` (another platform or libc: musl has no ``mallopt``)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = (ctypes.c_size_t,), ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Tune glibc's allocator once per process; ``False`` where there is no glibc."""
    global _done
    if _done:
        return True
    libc = _libc()
    if libc is None:
        return False
    # mallopt returns 1 on success
    _done = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    if not _done:
        log.debug("mallopt refused the allocator settings; keeping glibc's defaults")
    return _done


def release_freed_memory() -> bool:
    """Give the heap's free pages back to the system after a one-off peak (an evaluation's
    calibration holds a score matrix of every entity against every entity: 6.7 GB on WN18RR),
    which :func:`keep_freed_memory` would otherwise leave with the process until it exits.
    ``False`` where there is no glibc."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
