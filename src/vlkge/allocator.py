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
import logging
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_done = False


def keep_freed_memory() -> bool:
    """Tune glibc's allocator once per process; ``False`` where there is no glibc."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success
    _done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    if not _done:
        log.debug("mallopt refused the allocator settings; keeping glibc's defaults")
    return _done
