"""OpenMP threads that give a busy core back instead of spinning on it.

torch's CPU build runs its intra-op threads on GNU OpenMP (libgomp), whose waiting threads spin
300,000 times before they sleep. Where the cores are shared with other processes (a second
run, a tuning study's workers, a busy CI host), a thread waiting at a barrier spins on a core
that the thread it waits for needs: a VL-ComplEx step of the quick start on 2 threads, beside
two busy processes, took 671 ms instead of 107 ms with a spin count of 10,000, which costs
nothing on a quiet machine (40.0 against 40.1 ms; docs/scaling.md, "OpenMP threads on a shared
machine"). libgomp reads its settings once, when torch loads it, so ``import vlkge`` sets
``GOMP_SPINCOUNT`` before anything imports torch, unless the user set it or
``OMP_WAIT_POLICY``.
"""

from __future__ import annotations

import os
import sys

SPIN_COUNT = 10_000  # spins before a waiting libgomp thread sleeps (libgomp's default: 300,000)
USER_SETTINGS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def yield_busy_cores() -> bool:
    """Set libgomp's spin count for this process and its children; ``False`` where the user
    chose a setting or torch (and with it libgomp) is already loaded."""
    if any(name in os.environ for name in USER_SETTINGS) or "torch" in sys.modules:
        return False
    os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    return True
