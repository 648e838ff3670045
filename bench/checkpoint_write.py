#!/usr/bin/env python
"""What an epoch's checkpoints cost the training loop: written at once against submitted to
the background writer (:class:`vlkge.checkpoint.CheckpointWriter`), for payloads shaped like
a model's ``last.pt`` (table and Adagrad state) and ``best.pt`` (table).

    python bench/checkpoint_write.py [--rows 6555] [--width 1536] [--repeats 6] [--dir DIR]

Defaults: RotatE at d 768 on WN9-IMG (80 + 40 MB). Prints the seconds of each pair per repeat,
written in the folder ``--dir`` (default: a temporary folder), with ``vlkge train``'s allocator
setting.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from vlkge.allocator import keep_freed_memory
from vlkge.checkpoint import CheckpointWriter, save_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=6555)
    parser.add_argument("--width", type=int, default=1536)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args()
    keep_freed_memory()
    table = torch.randn(args.rows, args.width)
    last = {"model": {"entities": table}, "optimizer": {"sum": torch.rand_like(table)}}
    best = {"model": {"entities": table}}
    writer = CheckpointWriter()
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        paths = Path(folder) / "last.pt", Path(folder) / "best.pt"
        print("at once s | submitted s")
        for _ in range(args.repeats):
            start = time.perf_counter()
            save_checkpoint(paths[0], last)
            save_checkpoint(paths[1], best)
            at_once = time.perf_counter() - start
            start = time.perf_counter()
            writer.submit(paths[0], last)
            writer.submit(paths[1], best)
            submitted = time.perf_counter() - start
            writer.wait()
            print(f"{at_once:9.3f} | {submitted:11.3f}")


if __name__ == "__main__":
    main()
