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

It also prints what a second exact bound adds, one that needs no square root per pair: per
coordinate ``| |q_k| - |c_k| | <= |q_k - c_k|`` (the triangle inequality), so the moduli bound
``B = sum_k | |q_k| - |c_k| |`` drops a candidate at once when ``B`` exceeds the target's
distance, and after each group the exact prefix plus the moduli bound of the rest is a
tighter bound than the prefix alone: the share of candidates ``B`` drops, and the share of
square roots left with both bounds.
"""

from __future__ import annotations

import argparse

import torch

from vlkge.models.backbones.complex_ops import halves, rotate
from vlkge.training.setup import load_run


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
        table_mod = (table_re.square() + table_im.square()).sqrt()
        query_mod = (query_re.square() + query_im.square()).sqrt()
        needed, dropped, with_moduli = [], [], []
        for b in range(len(h)):  # one query at a time: [E, width] moduli
            moduli = ((query_re[b] - table_re) ** 2 + (query_im[b] - table_im) ** 2).sqrt()
            target = gamma - moduli[t[b]].sum()
            partial = moduli[:, : groups * args.group].view(len(table), groups, -1).sum(2)
            prefix = partial.cumsum(1)
            needed.append(_share_needed((gamma - prefix) < target, groups))
            terms = (query_mod[b] - table_mod)[:, : groups * args.group].abs()
            bound = terms.view(len(table), groups, -1).sum(2)
            whole = bound.sum(1, keepdim=True)
            rest = whole - bound.cumsum(1)  # the moduli bound of the groups still to come
            drop = (gamma - whole.squeeze(1)) < target
            dropped.append(drop.float().mean())
            share = _share_needed((gamma - (prefix + rest)) < target, groups, False)
            with_moduli.append(torch.where(drop, 0.0, share).mean())
    share = torch.stack(needed)
    print(
        f"{args.run}: {len(share)} {args.split} tail queries, {len(table)} candidates, "
        f"share of coordinates needed: mean {share.mean():.3f}, median {share.median():.3f}; "
        f"the moduli bound drops {torch.stack(dropped).mean():.3f} of the candidates at once, "
        f"and with it the share of square roots left is {torch.stack(with_moduli).mean():.3f}"
    )


def _share_needed(below: torch.Tensor, groups: int, mean: bool = True) -> torch.Tensor:
    """Per candidate, the share of groups summed before ``below`` first holds (all, never);
    their mean over the candidates where ``mean``."""
    first = torch.where(below.any(1), below.float().argmax(1) + 1, groups).float() / groups
    return first.mean() if mean else first


if __name__ == "__main__":
    main()
