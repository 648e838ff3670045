#!/usr/bin/env python
"""CPU time of the zero-shot scorer on chunks of validation queries, as evaluation calls it.

Usage::

    python bench/zero_shot_chunk.py CONFIG [--chunks 10] [--chunk 256] [--side tail]

The zero-shot scorer is called once per chunk of queries of every evaluated split, and of the
validation split in a blend's fit (``evaluation.zero_shot_blend``). The prompts must be in the feature cache (a first ``vlkge zero-shot`` run puts them
there), so that only scoring is timed. Compare two commits by running this file of the newer
one with ``PYTHONPATH=<older checkout>/src`` (docs/results.md, "FB15k-237").
"""

from __future__ import annotations

import argparse
import time

import torch

import vlkge
from vlkge.config import load_config
from vlkge.data.datasets import load_graph
from vlkge.evaluation.zero_shot import configured_scorer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=256, help="queries per chunk (the CPU's)")
    parser.add_argument("--side", choices=["tail", "head"], default="tail")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    kg = load_graph(cfg["dataset"], True)
    score = configured_scorer(cfg, kg).scorer()
    triples = kg.splits["valid"][: args.chunk * (args.chunks + 1)]
    anchors = triples[:, 0] if args.side == "tail" else triples[:, 2]
    score(args.side, anchors[: args.chunk], triples[: args.chunk, 1])  # warm-up
    start = time.process_time()
    for i in range(1, args.chunks + 1):
        rows = slice(i * args.chunk, (i + 1) * args.chunk)
        score(args.side, anchors[rows], triples[rows, 1])
    per_chunk = (time.process_time() - start) / args.chunks * 1000
    print(f"{vlkge.__file__}: {per_chunk:.1f} ms of CPU per chunk of {args.chunk} queries")


if __name__ == "__main__":
    main()
