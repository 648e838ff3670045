"""The allocator setting applies on Linux with glibc and is harmless to repeat; memory it
keeps is given back on request."""

from __future__ import annotations

import platform
import sys

import pytest
import torch

from vlkge.allocator import keep_freed_memory, release_freed_memory

GLIBC = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt is glibc's",
)


def _resident_bytes() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


@GLIBC
def test_keep_freed_memory_applies_once_and_allocations_still_work():
    assert keep_freed_memory()
    assert keep_freed_memory()  # idempotent
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB: above glibc's largest mmap threshold
    assert float(big.sum()) == big.numel()
    del big
    assert float(torch.zeros(64 * 2**20 // 4).sum()) == 0.0


@GLIBC
def test_released_memory_leaves_the_process():
    """A freed 256 MiB buffer stays resident under the setting until it is released."""
    assert keep_freed_memory()
    size = 256 * 2**20
    big = torch.ones(size // 4)
    del big
    kept = _resident_bytes()
    assert release_freed_memory()
    assert _resident_bytes() < kept - size // 2
