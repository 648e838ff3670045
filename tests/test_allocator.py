"""The allocator setting applies on Linux with glibc and is harmless to repeat."""

from __future__ import annotations

import platform
import sys

import pytest
import torch

from vlkge.allocator import keep_freed_memory


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt is glibc's",
)
def test_keep_freed_memory_applies_once_and_allocations_still_work():
    assert keep_freed_memory()
    assert keep_freed_memory()  # idempotent
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB: above glibc's largest mmap threshold
    assert float(big.sum()) == big.numel()
    del big
    assert float(torch.zeros(64 * 2**20 // 4).sum()) == 0.0
