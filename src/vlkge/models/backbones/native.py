"""The candidate distances' backward on the CPU as a small C++ library (``pair_grads.cpp``).

The backward adds each ``(query, candidate)`` pair's gradient into two rows that other pairs
share, so a loop made by ``torch.compile`` runs on one thread (parallel, inductor makes every
addition atomic) and writes the modulus distance's gradient row in two passes, computing each
complex modulus twice. The C++ loop runs one part of the pairs per thread of torch's OpenMP
pool, cut at entity boundaries so each thread owns its table rows, and computes each modulus
once (1.7-1.9x less CPU time on one core, and every core: docs/results.md, issue 20). Built
with the C++ compiler that compiled kernels need, once per source, compiler and CPU
capability, into a private cache folder; where that fails, the compiled torch code runs
instead.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from vlkge.data.download import cache_dir

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("pair_grads.cpp")
#: ``-fno-math-errno`` lets the compiler vectorise the square roots
FLAGS = ("-O3", "-fno-math-errno", "-fopenmp", "-std=c++17", "-shared", "-fPIC")
#: vector instructions by torch's CPU capability (the one its own kernels use)
ISA_FLAGS = {
    "AVX512": ("-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mavx2", "-mfma"),
    "AVX2": ("-mavx2", "-mfma"),
}
#: the library's function per float type
FUNCTIONS = {torch.float32: "pair_grads_f32", torch.float64: "pair_grads_f64"}
#: its arguments: modulus or L1; query, table, rows, ents, grad; P, B, E, D, parts; outputs
ARGTYPES = [ctypes.c_int32, *[ctypes.c_void_p] * 5, *[ctypes.c_int64] * 5, *[ctypes.c_void_p] * 2]
#: the distances it differentiates (``kernels.DISTANCES``' keys)
KINDS = ("l1", "modulus")


def _check_private(folder: Path) -> None:
    """Refuse a folder that another user could write a library into (it would be run)."""
    info = folder.stat()
    if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o022):
        raise OSError(f"{folder} is not private to this user")


def find_compiler() -> str | None:
    """The C++ compiler on PATH, if any: the library is built with it, and compiled kernels
    (``kernels.Kernels.configure``) are enabled by it."""
    return shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")


@functools.cache
def library() -> ctypes.CDLL | None:
    """The built library, or ``None`` (no C++ compiler, or the build failed: logged)."""
    compiler = find_compiler()
    if compiler is None:
        return None
    flags = (*FLAGS, *ISA_FLAGS.get(torch.backends.cpu.get_cpu_capability(), ()))
    key = "\0".join([SOURCE.read_text(), compiler, *flags])
    name = f"pair_grads-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"
    try:
        folder = cache_dir() / "native"  # the user cache: $VLKGE_CACHE_DIR or ~/.cache/vlkge
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _check_private(folder)
        path = folder / name
        if not path.exists():
            with tempfile.TemporaryDirectory(dir=folder) as scratch:
                built = Path(scratch) / name
                command = [compiler, *flags, str(SOURCE), "-o", str(built)]
                subprocess.run(command, check=True, capture_output=True, timeout=300)
                os.replace(built, path)  # whole, even with other processes building it
        lib = ctypes.CDLL(str(path))
        for function in FUNCTIONS.values():
            getattr(lib, function).argtypes = ARGTYPES
            getattr(lib, function).restype = None
    except (OSError, AttributeError, subprocess.SubprocessError) as exc:
        log.warning("native pair gradients unavailable (%s); using compiled torch code", exc)
        return None
    return lib


def pair_grads(
    query: torch.Tensor,
    table: torch.Tensor,
    rows: torch.Tensor,
    ents: torch.Tensor,
    grad: torch.Tensor,
    kind: str,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``kernels._pair_grads`` (pairs sorted by entity, ``ents`` nondecreasing) on the CPU's
    threads; ``None`` where the library does not apply (another device, float type or
    distance) or is unavailable."""
    function = FUNCTIONS.get(query.dtype)
    if (
        kind not in KINDS
        or function is None
        or query.device.type != "cpu"
        or not query.dtype == table.dtype == grad.dtype
    ):
        return None
    lib = library()
    if lib is None:
        return None
    query, table, grad = query.contiguous(), table.contiguous(), grad.contiguous()
    rows, ents = rows.long().contiguous(), ents.long().contiguous()
    # a part per thread, each with at least as many pairs as its private buffer has rows
    parts = max(1, min(torch.get_num_threads(), len(rows) // max(1, len(query))))
    grad_query = query.new_empty(parts, *query.shape)  # a part's queries, summed below
    grad_table = torch.empty_like(table)
    getattr(lib, function)(
        kind == "modulus",
        *(t.data_ptr() for t in (query, table, rows, ents, grad)),
        len(rows),
        len(query),
        len(table),
        table.shape[1],
        parts,
        grad_query.data_ptr(),
        grad_table.data_ptr(),
    )
    return (grad_query[0] if parts == 1 else grad_query.sum(0)), grad_table
