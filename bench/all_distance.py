#!/usr/bin/env python
"""Distances of every query to every entity, forward and backward (TransE and RotatE trained
1-vs-all): vlkge's compiled kernel against the eager path, in one process.

Usage::

    OMP_NUM_THREADS=1 python bench/all_distance.py [--kind l1 modulus] [--queries 512]
        [--entities 6555] [--dim 200] [--repeats 3] [--device cpu]

The compiled path is ``kernels._AllDistance`` (tiles forward; backward blocks of 64 queries,
each gradient one compiled reduction); the eager path is what runs without a compiler,
``torch.cdist(p=1)`` for L1 and autograd over bounded blocks for the modulus. Both give the
same values and gradients (checked here, and against autograd in
tests/models/test_backbones.py). Prints the best of ``--repeats`` calls after a warm-up,
the ratio, and each path's peak memory on CUDA (docs/results.md, "On a GPU: one H200").
"""

from __future__ import annotations

import argparse
import time

import torch

from vlkge.models.backbones import kernels


def eager(query: torch.Tensor, table: torch.Tensor, kind: str) -> torch.Tensor:
    """The path without a compiler: cdist for L1, autograd over bounded blocks otherwise."""
    if kind == "l1":
        return torch.cdist(query, table, p=1)
    rows = kernels._block_rows(table.numel(), kernels.EAGER_BLOCK_ELEMENTS)
    return torch.cat([kernels._tiles_block(q, table, len(table), kind) for q in query.split(rows)])


def compiled(query: torch.Tensor, table: torch.Tensor, kind: str) -> torch.Tensor:
    return kernels._AllDistance.apply(query, table, kind)


def timed(fn, query, table, grad, kind: str, repeats: int):
    """Best seconds of ``repeats`` forward + backward calls after a warm-up call, and the
    last call's values and gradients."""
    times = []
    for _ in range(repeats + 1):
        query.grad = table.grad = None
        if query.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn(query, table, kind)
        out.backward(grad)
        if query.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times[1:]), (out.detach(), query.grad.clone(), table.grad.clone())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", nargs="+", default=["l1", "modulus"])
    parser.add_argument("--queries", type=int, default=512)
    parser.add_argument("--entities", type=int, default=6555)
    parser.add_argument("--dim", type=int, default=200, help="reals a row (RotatE: 2 x d)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    kernels.Kernels.configure("auto")
    g = torch.Generator().manual_seed(0)
    for kind in args.kind:
        query = torch.randn(args.queries, args.dim, generator=g).to(args.device)
        table = torch.randn(args.entities, args.dim, generator=g).to(args.device)
        grad = torch.randn(args.queries, args.entities, generator=g).to(args.device)
        query.requires_grad_(), table.requires_grad_()

        found, peaks = {}, {}
        for name, fn in (("eager", eager), ("compiled", compiled)):
            if query.is_cuda:
                torch.cuda.reset_peak_memory_stats()
            found[name] = timed(fn, query, table, grad, kind, args.repeats)
            if query.is_cuda:
                peaks[name] = torch.cuda.max_memory_allocated() / 2**20
        for a, b in zip(found["eager"][1], found["compiled"][1], strict=True):
            if not torch.allclose(a, b, rtol=1e-4, atol=1e-3 * float(a.abs().max())):
                raise SystemExit(f"{kind}: the compiled path's values or gradients differ")
        eager_s, compiled_s = found["eager"][0], found["compiled"][0]
        memory = f", peak MB {peaks['eager']:.0f} -> {peaks['compiled']:.0f}" if peaks else ""
        print(
            f"{kind}: eager {eager_s * 1e3:.0f} ms, compiled {compiled_s * 1e3:.0f} ms, "
            f"{eager_s / compiled_s:.2f}x{memory} ({args.queries} x {args.entities}, "
            f"{args.dim} reals, {torch.get_num_threads()} threads, {args.device})"
        )


if __name__ == "__main__":
    main()
