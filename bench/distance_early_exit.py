#!/usr/bin/env python
"""How much of a distance score an exact early exit could skip, on a trained run.

Usage::

    python bench/distance_early_exit.py RUN [--queries 400] [--group 16] [--split valid]

A candidate's rank only needs to know whether it scores above, level with or below the
target. RotatE's and TransE's distances are sums of non-negative terms, so a candidate whose
partial sum over the first coordinates already scores below the target (``gamma - partial <
gamma - d_target``, compared in float32) is below it whatever the rest adds: its remaining
coordinates could be skipped without changing any rank. This prints the mean and median share
of coordinates (in groups of ``--group``) that tail queries of the split would still need,
i.e. the bound on what such a kernel could save (docs/results.md, issue 20).
"""

from __future__ import annotations

import argparse

import torch

from vlkge.models.backbones.complex_ops import halves, rotate
from vlkge.training.run import load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--group", type=int, default=16)
    parser.add_argument("--split", default="valid")
    args = parser.parse_args()
    cfg, kg, model = load_run(args.run)
    if cfg["model"]["backbone"] != "rotate" or cfg["model"]["rotate_distance"] != "modulus":
        raise SystemExit("this probe reads RotatE runs with the modulus distance")
    gamma = float(cfg["model"]["gamma"])
    with torch.no_grad():
        table = model.entity_table()
        h, r, t = kg.splits[args.split][: args.queries].unbind(1)
        query_re, query_im = halves(rotate(table[h], model.relations(r)))
        table_re, table_im = halves(table)
        width = query_re.shape[1]
        groups = width // args.group
        needed = []
        for b in range(len(h)):  # one query at a time: [E, width] moduli
            moduli = ((query_re[b] - table_re) ** 2 + (query_im[b] - table_im) ** 2).sqrt()
            target = gamma - moduli[t[b]].sum()
            partial = moduli[:, : groups * args.group].view(len(table), groups, -1).sum(2)
            below = (gamma - partial.cumsum(1)) < target  # can stop after this group
            first = torch.where(below.any(1), below.float().argmax(1) + 1, groups)
            needed.append(first.float().mean() / groups)
    share = torch.stack(needed)
    print(
        f"{args.run}: {len(share)} {args.split} tail queries, {len(table)} candidates, "
        f"share of coordinates needed: mean {share.mean():.3f}, median {share.median():.3f}"
    )


if __name__ == "__main__":
    main()
