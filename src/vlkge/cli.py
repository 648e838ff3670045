"""The ``vlkge`` command line.

Errors caused by the user's input (``VlkgeError``) print one line and exit with status 2;
no traceback reaches the user for bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from vlkge import __version__
from vlkge import config as config_mod
from vlkge.errors import VlkgeError

log = logging.getLogger("vlkge")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def _metrics_table(metrics: dict, title: str) -> str:
    rows = [f"{title:<12} {'MRR':>7} {'MR':>9} {'H@1':>7} {'H@3':>7} {'H@10':>7} {'n':>7}"]
    for key in ("both", "head", "tail"):
        if key in metrics:
            m = metrics[key]
            rows.append(
                f"{key:<12} {m['mrr']:>7.4f} {m['mr']:>9.2f} {m['hits@1']:>7.4f} "
                f"{m['hits@3']:>7.4f} {m['hits@10']:>7.4f} {m['count']:>7}"
            )
    for rel, m in metrics.get("per_relation", {}).items():
        rows.append(f"  {rel[:30]:<30} MRR {m['mrr']:.4f}  H@10 {m['hits@10']:.4f}  n {m['count']}")
    return "\n".join(rows)


# --- commands --------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from vlkge.training.run import train

    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise VlkgeError(f"{run_dir}: nothing to resume (no config.yaml)")
        cfg = config_mod.load_config(run_dir / "config.yaml", args.set)
    else:
        if not args.out:
            raise VlkgeError("train needs --out DIR (or --resume DIR)")
        run_dir = Path(args.out)
        cfg = config_mod.load_config(args.config, args.set)
    metrics = train(cfg, run_dir)
    for split in cfg["evaluation"]["splits"]:
        print(_metrics_table(metrics[split], split))
    print(f"run folder: {run_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vlkge.training.run import evaluate_run, load_run

    cfg, kg, model = load_run(args.run, args.checkpoint)
    if args.ties:
        cfg["evaluation"]["ties"] = args.ties
    protocol = {"run": None, "default": False, "paper": True}[args.protocol]
    metrics = evaluate_run(cfg, kg, model, [args.split], sys.stderr.isatty(), protocol)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(_metrics_table(metrics[args.split], args.split))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from vlkge.predict import top_k
    from vlkge.training.run import load_run

    if (args.head is None) == (args.tail is None):
        raise VlkgeError(
            "predict needs exactly one of --head ENTITY (predict tails) or --tail ENTITY"
        )
    _, kg, model = load_run(args.run)
    side, anchor = ("tail", args.head) if args.head is not None else ("head", args.tail)
    answers = top_k(model, kg, side, anchor, args.relation, args.top_k, args.exclude_known)
    if args.json:
        print(json.dumps(answers, indent=2))
        return 0
    query = (
        f"({anchor}, {args.relation}, ?)" if side == "tail" else f"(?, {args.relation}, {anchor})"
    )
    print(f"top {len(answers)} for {query}   * = known triple")
    for a in answers:
        mark = "*" if a["known"] else " "
        print(f"{a['rank']:>4} {mark} {a['score']:>10.4f}  {a['entity']}  {a['name'][:60]}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from vlkge.data.datasets import DATASETS, load_dataset
    from vlkge.data.stats import format_statistics, statistics

    if args.action == "list":
        for spec in DATASETS.values():
            print(f"{spec.name:<16} {spec.description}")
        return 0
    if not args.name:
        raise VlkgeError("datasets info needs a dataset NAME (see `vlkge datasets list`)")
    kg = load_dataset(args.name, data_dir=args.data_dir)
    stats = statistics(kg)
    print(json.dumps(stats, indent=2) if args.json else format_statistics(stats))
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    if args.config is None and not args.set:
        print(config_mod.default_text(), end="")
        return 0
    print(config_mod.dump(config_mod.load_config(args.config, args.set)), end="")
    return 0


# --- parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlkge",
        description="Multimodal knowledge-graph embeddings with vision-language models.",
    )
    parser.add_argument("--version", action="version", version=f"vlkge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train and evaluate a model; writes a run folder")
    p.add_argument("--config", help="YAML file overriding the defaults (vlkge config show)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set model.backbone=distmult",
    )
    p.add_argument("--out", help="run folder (config, trace, checkpoints, metrics.json)")
    p.add_argument("--resume", metavar="DIR", help="resume the run in DIR from its last checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a run's selected checkpoint on a split")
    p.add_argument("run", help="run folder")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--ties", choices=["realistic", "optimistic", "pessimistic"])
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument(
        "--protocol",
        default="run",
        choices=["run", "default", "paper"],
        help="ranking protocol: the run's own, the default (per-direction filter, realistic "
        "ties) or the reference implementation's (merged filter, ties by entity id)",
    )
    p.add_argument("--json", action="store_true", help="print metrics.json-style JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "predict", help="top-k answers for (head, relation, ?) or (?, relation, tail)"
    )
    p.add_argument("run", help="run folder")
    p.add_argument("--head", help="known head entity: predict tails")
    p.add_argument("--tail", help="known tail entity: predict heads")
    p.add_argument("--relation", required=True)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--exclude-known", action="store_true", help="drop triples already in the graph")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("datasets", help="list named datasets or show a dataset's statistics")
    p.add_argument("action", choices=["list", "info"])
    p.add_argument("name", nargs="?")
    p.add_argument("--data-dir", help="folder searched before $VLKGE_DATA_DIR and the cache")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("config", help="show the documented defaults or a resolved config")
    p.add_argument("action", choices=["show"])
    p.add_argument("--config", help="a YAML file to resolve against the defaults")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except VlkgeError as exc:
        print(f"vlkge: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
