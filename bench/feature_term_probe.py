#!/usr/bin/env python
"""Probe (issue 18 ablation): does a feature-space bilinear term help 1-vs-all ComplEx?

Trains, outside the package's model code, reciprocal ComplEx 1-vs-all (cross-entropy over all
entities, N3, Adagrad 0.1, batch 256) plus an optional second score computed directly on the
frozen text features ``x`` (centred, L2-normalised, no learned projection)::

    score(h, r, t) = ComplEx(h, r, t) + (x_h A_r) . x_t

with ``A_r`` per (reciprocal) relation either a diagonal (``--text diag``) or a full matrix
(``--text full``), initialised at ``--scale`` times the identity (so the term starts as a
scaled cosine similarity). ``--text none`` is the structural model. Selection on validation
MRR (default protocol, vlkge's Evaluator); ``--test`` scores the selected state on test.

Usage::

    python bench/feature_term_probe.py --config configs/wn9-img/quick-vl.yaml --text diag
    python bench/feature_term_probe.py ... --inductive --struct 0   # text term alone, inductive

Results: docs/results.md, "What did not help".
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from vlkge.config import load_config
from vlkge.evaluation.evaluator import Evaluator
from vlkge.models.features import feature_cache_dir, load_features
from vlkge.training.setup import prepare

INDUCTIVE = [
    "dataset.name=runs/data/wn9-img-ind",
    "dataset.setting=inductive",
    "evaluation.only_unseen=true",
]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/wn9-img/quick-vl.yaml")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--n3", type=float, default=0.05)
    p.add_argument("--text", choices=("none", "diag", "full"), default="diag")
    p.add_argument("--scale", type=float, default=10.0, help="initial A_r = scale * I")
    p.add_argument("--alr", type=float, default=0.1, help="Adagrad learning rate of A_r")
    p.add_argument("--areg", type=float, default=0.0, help="L2 weight on A_r - scale * I")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--every", type=int, default=2)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--inductive", action="store_true", help="the WN9-IMG inductive split")
    p.add_argument("--sdrop", type=float, default=0.0, help="structural dropout share")
    p.add_argument("--struct", type=int, default=1, help="0: the text term alone")
    p.add_argument("--test", action="store_true")
    p.add_argument("--set", action="append", default=[])
    return p.parse_args()


def main() -> None:
    a = parse()
    torch.set_num_threads(1)
    extra = INDUCTIVE if a.inductive else []
    cfg = load_config(a.config, extra + a.set + [f"seed={a.seed}"])
    kg, _ = prepare(cfg)
    x, have = load_features(feature_cache_dir(cfg, kg), kg, ["text"])["text"]
    x = x.float()
    x = F.normalize(x - x[have].mean(0), dim=-1) * have[:, None]
    num_e, num_r, w = kg.num_entities, kg.num_relations, x.shape[1]
    seen = kg.seen_in_train()
    torch.manual_seed(a.seed)
    ent = torch.nn.Parameter(torch.randn(num_e, 2 * a.dim) * 1e-3)
    rel = torch.nn.Parameter(torch.randn(2 * num_r, 2 * a.dim) * 1e-3)
    groups = [{"params": [ent, rel], "lr": 0.1}]
    eye = torch.eye(w) * a.scale
    bilinear = None
    if a.text == "full":
        bilinear = torch.nn.Parameter(eye.repeat(2 * num_r, 1, 1))
    elif a.text == "diag":
        bilinear = torch.nn.Parameter(torch.full((2 * num_r, w), a.scale))
    if bilinear is not None:
        groups.append({"params": [bilinear], "lr": a.alr})
    opt = torch.optim.Adagrad(groups)

    def scores(anchor, relation, dropped=None):
        table = ent * (seen[:, None] * a.struct)
        if dropped is not None:
            table = table * (~dropped)[:, None]
        h, r = table[anchor], rel[relation]
        hr, hi = h.chunk(2, -1)
        rr, ri = r.chunk(2, -1)
        s = torch.cat([hr * rr - hi * ri, hr * ri + hi * rr], -1) @ table.t()
        if a.text == "full":  # every relation's map at once, then each row's own
            every = (x[anchor] @ bilinear.permute(1, 0, 2).reshape(w, -1)).view(-1, 2 * num_r, w)
            s = s + every[torch.arange(len(anchor)), relation] @ x.t()
        elif a.text == "diag":
            s = s + (x[anchor] * bilinear[relation]) @ x.t()
        return s

    train = kg.splits["train"]
    inverse = torch.stack([train[:, 2], train[:, 1] + num_r, train[:, 0]], 1)
    queries = torch.cat([train, inverse])
    evaluator = Evaluator(kg, cfg["evaluation"])

    @torch.no_grad()
    def score_fn(side, anchor, relation, span=None):
        s = scores(anchor, relation if side == "tail" else relation + num_r)
        return s if span is None else s[:, span[0] : span[1]]

    params = [ent, rel] + ([bilinear] if bilinear is not None else [])
    best, best_epoch, bad, trace, state = -1.0, 0, 0, [], None
    start = time.time()
    for epoch in range(1, a.epochs + 1):
        g = torch.Generator().manual_seed(a.seed * 1000 + epoch)
        total = 0.0
        for idx in torch.randperm(len(queries), generator=g).split(256):
            b = queries[idx]
            dropped = torch.rand(num_e, generator=g) < a.sdrop if a.sdrop else None
            s = scores(b[:, 0], b[:, 1], dropped).masked_fill(~seen, float("-inf"))
            loss = F.cross_entropy(s, b[:, 2])
            vectors = (ent[b[:, 0]], rel[b[:, 1]], ent[b[:, 2]])
            objective = loss + a.n3 * sum(v.abs().pow(3).sum() for v in vectors) / len(b)
            if a.text == "full" and a.areg:
                objective = objective + a.areg * (bilinear[b[:, 1]] - eye).pow(2).sum() / len(b)
            opt.zero_grad()
            objective.backward()
            opt.step()
            total += loss.item() * len(b)
        if epoch % a.every:
            continue
        mrr = evaluator.evaluate_scores(score_fn, "valid")["both"]["mrr"]
        trace.append(
            [epoch, round(total / len(queries), 4), round(mrr, 4), round(time.time() - start)]
        )
        print(trace[-1], flush=True)
        if mrr > best:
            best, best_epoch, bad = mrr, epoch, 0
            state = [p.detach().clone() for p in params]
        else:
            bad += 1
            if bad >= a.patience:
                break
    out = {"args": vars(a), "best_valid": best, "best_epoch": best_epoch, "trace": trace}
    if a.test and state is not None:
        with torch.no_grad():
            for p, saved in zip(params, state, strict=True):
                p.copy_(saved)
        out["test"] = evaluator.evaluate_scores(score_fn, "test")["both"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
