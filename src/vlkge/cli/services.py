"""Long-running commands: ``tune`` (docs/tuning.md) and ``serve`` (docs/serving.md)."""

from __future__ import annotations

import argparse

from vlkge.errors import VlkgeError


def cmd_tune(args: argparse.Namespace) -> int:
    """A hyper-parameter search on Optuna (vlkge.tuning, docs/tuning.md)."""
    from vlkge.tuning import search

    if args.show:
        if not args.folder:
            raise VlkgeError("--show needs the search folder: vlkge tune DIR --show")
        print(search.show(args.folder, args.storage))
        return 0
    if args.folder:
        raise VlkgeError(f"continue a search with `vlkge tune --resume {args.folder}`")
    settings, url = search.prepare(
        config=args.config,
        sets=args.set,
        space=args.space,
        trials=args.trials,
        out=args.out,
        storage=args.storage,
        study=args.study,
        resume=args.resume,
    )
    outcome = search.search(settings, url, args.workers, args.timeout)
    print(search.summary(settings, outcome.rows))
    print(search.closing(outcome))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from vlkge.serving import Limits, serve

    limits = {}  # what is not given keeps the default of vlkge.serving.Limits
    if args.max_upload_mb is not None:
        limits["max_upload_bytes"] = int(args.max_upload_mb * 2**20)
    if args.max_pixels is not None:
        limits["max_pixels"] = args.max_pixels
    serve(args.runs, args.host, args.port, args.token, Limits(**limits))
    return 0
