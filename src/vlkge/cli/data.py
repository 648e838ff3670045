"""Commands about inputs: ``datasets``, ``encode`` (the feature cache) and ``config``
(the documented defaults and resolved configs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vlkge import config as config_mod
from vlkge.errors import VlkgeError


def cmd_datasets(args: argparse.Namespace) -> int:
    from vlkge.data.datasets import load_dataset
    from vlkge.data.registry import DATASETS
    from vlkge.data.stats import format_statistics, statistics

    if args.action == "list":
        for spec in DATASETS.values():
            print(f"{spec.name:<16} {spec.description}")
        return 0
    if not args.name:
        raise VlkgeError(f"datasets {args.action} needs a dataset NAME (see `vlkge datasets list`)")
    if args.action == "split-inductive":
        from vlkge.data.inductive import split_inductive

        if not args.out:
            raise VlkgeError("datasets split-inductive needs --out DIR")
        split = split_inductive(
            args.name,
            args.out,
            fraction=args.fraction,
            seed=args.seed,
            data_dir=args.data_dir,
            image_root=args.image_root,
            pairs=args.pairs,
            force=args.force,
        )
        if args.json:
            print(json.dumps(split.counts, indent=2))
        else:
            print((Path(args.out) / "README.txt").read_text(encoding="utf-8").split("\n\nRules")[0])
            print(f"dataset folder: {args.out} (load with dataset.setting: inductive)")
        return 0
    kg = load_dataset(args.name, data_dir=args.data_dir, inductive=args.inductive)
    stats = statistics(kg)
    print(json.dumps(stats, indent=2) if args.json else format_statistics(stats))
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    """The work is :func:`vlkge.encoders.cache.policy.encode_dataset`'s; under torchrun each
    rank encodes a share of the entities and rank 0 reports."""
    from dataclasses import fields

    from vlkge import distributed
    from vlkge.encoders.cache.policy import EncodeRequest, encode_dataset
    from vlkge.training.setup import resolve_device

    cfg = config_mod.load_config(args.config, args.set)
    device = distributed.device_for_rank(resolve_device(args.device or cfg["device"]))
    request = EncodeRequest(**{f.name: getattr(args, f.name) for f in fields(EncodeRequest)})
    with distributed.session(device):
        done = encode_dataset(cfg, request, device, progress=sys.stderr.isatty())
    if done is not None:
        cache, reports = done
        for report in reports:
            print(report.describe(cache.metadata_path(report.modality)))
        print(f"feature cache: {cache.folder}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    if args.space:
        from vlkge.tuning.space import space_text

        print(space_text(), end="")
        return 0
    cfg = config_mod.load_config(args.config, args.set)
    given = args.config is not None or args.set
    only = config_mod.changed_keys(cfg) if given and not args.full else None
    print(config_mod.documented(cfg, only), end="")
    return 0
