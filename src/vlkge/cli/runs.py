"""Commands that make, score and read run folders: ``train``, ``evaluate``, ``zero-shot``,
``report`` and ``compare`` (the work lives in training/, evaluation/ and reports/).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vlkge import config as config_mod
from vlkge.errors import VlkgeError
from vlkge.files import write_text
from vlkge.runfolder import CONFIG, require_run_folder


def cmd_train(args: argparse.Namespace) -> int:
    from vlkge import distributed
    from vlkge.training.run import train

    if args.resume:
        run_dir = require_run_folder(args.resume)
        cfg = config_mod.load_config(run_dir / CONFIG, args.set)
    else:
        if not args.out:
            raise VlkgeError("train needs --out DIR (or --resume DIR)")
        run_dir = Path(args.out)
        cfg = config_mod.load_config(args.config, args.set)
    metrics = train(cfg, run_dir)
    if not distributed.is_main():  # a data-parallel run reports once, from rank 0
        return 0
    from vlkge.reports.tables import metrics_table

    if cfg["report"]["after_train"]:
        from vlkge.reports.html import write_report_safely

        write_report_safely(run_dir)
    for split in cfg["evaluation"]["splits"]:
        print(metrics_table(metrics[split], split))
    print(f"run folder: {run_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vlkge.reports.tables import metrics_table
    from vlkge.training.final import evaluate_run
    from vlkge.training.setup import load_run, resolve_device

    ties = [f"evaluation.ties={args.ties}"] if args.ties else []  # checked as the config is
    cfg, kg, model = load_run(args.run, args.checkpoint, [*args.set, *ties])
    model.to(resolve_device(cfg["device"]))  # the run's device, or --set device=...
    if args.only_unseen:
        cfg["evaluation"]["only_unseen"] = True
    protocol = {"run": None, "default": False, "paper": True}[args.protocol]
    metrics = evaluate_run(cfg, kg, model, [args.split], sys.stderr.isatty(), protocol)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(metrics_table(metrics[args.split], args.split))
    return 0


def cmd_zero_shot(args: argparse.Namespace) -> int:
    from vlkge.evaluation.zero_shot import run_zero_shot
    from vlkge.reports.tables import metrics_table

    cfg = config_mod.load_config(args.config, args.set)
    metrics = run_zero_shot(cfg, args.out, progress=sys.stderr.isatty())
    for split in cfg["evaluation"]["splits"]:
        print(metrics_table(metrics[split], split))
    print(f"run folder: {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from vlkge.reports import write_report

    path = write_report(
        args.run, args.out, zero_shot=args.zero_shot, samples=args.samples, top_k=args.top_k
    )
    print(f"report: {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from vlkge.reports import compare_runs, format_table, render_html

    comparison = compare_runs(args.runs, args.split)
    print(format_table(comparison))
    if args.html:
        write_text(args.html, render_html(comparison))
        print(f"html: {args.html}")
    return 0
