#!/usr/bin/env python
"""The negatives' backward of the distance backbones: the native C++ loop against the loop
``torch.compile`` makes, in one process, at WN9-IMG's shapes.

Usage::

    OMP_NUM_THREADS=1 python bench/pair_grads.py [--kind modulus] [--repeats 20]
                                                 [--clock cpu|wall]

One call of each is the gradient of ``sum_k grad_k dist(query[rows_k], table[ents_k])`` over
a step's 51,200 ``(query, candidate)`` pairs sorted by entity (512 queries, N 100, 6,555
entities, d 768: RotatE's 2 x 768 floats a row, TransE's 768), as
``kernels._CandidateDistance`` runs it; both give the same gradients (checked here, and
against autograd in tests/models/test_native.py). Prints seconds per call and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from vlkge.allocator import keep_freed_memory
from vlkge.models.backbones import kernels, native

SHAPES = {"queries": 512, "negatives": 100, "entities": 6555, "dim": 768}


def timed(fn, repeats: int, now) -> float:
    fn()  # warm-up (and the compile)
    start = now()
    for _ in range(repeats):
        fn()
    return (now() - start) / repeats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=native.KINDS, default="modulus")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="cpu")
    args = parser.parse_args(argv)
    if native.library() is None:
        print("no C++ compiler: nothing to compare")
        return 1
    keep_freed_memory()  # as training runs (vlkge.training.setup.prepare)
    now = time.perf_counter if args.clock == "wall" else time.process_time
    width = SHAPES["dim"] * (2 if args.kind == "modulus" else 1)
    g = torch.Generator().manual_seed(0)
    query = torch.randn(SHAPES["queries"], width, generator=g)
    table = torch.randn(SHAPES["entities"], width, generator=g)
    ids = torch.randint(len(table), (len(query), SHAPES["negatives"]), generator=g)
    grad = torch.randn(ids.shape, generator=g).reshape(-1)
    order = torch.argsort(ids.reshape(-1), stable=True)
    pairs = (query, table, order // ids.shape[1], ids.reshape(-1)[order], grad[order])
    kernels.Kernels.enabled = True

    def compiled():
        return kernels.Kernels.call(kernels._pair_grads, args.kind, *pairs)

    def native_loop():
        return native.pair_grads(*pairs, args.kind)

    for mine, theirs in zip(native_loop(), compiled(), strict=True):
        torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)
    seconds = {
        name: timed(fn, args.repeats, now)
        for name, fn in [("compiled", compiled), ("native", native_loop)]
    }
    print(f"threads: {torch.get_num_threads()}, clock: {args.clock}, kind: {args.kind}")
    for name, value in seconds.items():
        print(f"{name}: {value * 1e3:.1f} ms a call")
    print(f"native is {seconds['compiled'] / seconds['native']:.2f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
