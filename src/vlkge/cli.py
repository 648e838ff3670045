"""The ``vlkge`` command line.

Errors caused by the user's input (``VlkgeError``) print one line and exit with status 2;
no traceback reaches the user for bad input. A run stopped by Ctrl-C or SIGTERM exits with
status 130 or 143.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from vlkge import __version__
from vlkge import config as config_mod
from vlkge.errors import VlkgeError
from vlkge.files import write_text
from vlkge.runfolder import CONFIG, require_run_folder

log = logging.getLogger("vlkge")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


# --- commands --------------------------------------------------------------------------------
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
    from vlkge.training.run import evaluate_run, load_run

    cfg, kg, model = load_run(args.run, args.checkpoint, args.set)
    if args.ties:
        cfg["evaluation"]["ties"] = args.ties
    if args.only_unseen:
        cfg["evaluation"]["only_unseen"] = True
    protocol = {"run": None, "default": False, "paper": True}[args.protocol]
    metrics = evaluate_run(cfg, kg, model, [args.split], sys.stderr.isatty(), protocol)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(metrics_table(metrics[args.split], args.split))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from vlkge.predict import top_k
    from vlkge.training.run import load_run

    if args.new_text is not None or args.new_image is not None:
        return _predict_new(args)
    if args.direction is not None:
        raise VlkgeError("--direction goes with --new-text / --new-image")
    if (args.head is None) == (args.tail is None):
        raise VlkgeError(
            "predict needs exactly one of --head ENTITY (predict tails) or --tail ENTITY, "
            "or a new entity's --new-text / --new-image"
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


def _predict_new(args: argparse.Namespace) -> int:
    from vlkge.predict import new_entity_features, predict_new_entity
    from vlkge.training.run import load_run

    if args.head is not None or args.tail is not None:
        raise VlkgeError("--new-text / --new-image replace --head / --tail (use --direction)")
    cfg, kg, model = load_run(args.run)
    features = new_entity_features(cfg, kg, args.new_text, args.new_image, model=model)
    direction = args.direction or "tail"
    answers = predict_new_entity(model, kg, features, args.relation, direction, args.top_k)
    if args.json:
        print(json.dumps(answers, indent=2))
        return 0
    query = f"(new, {args.relation}, ?)" if direction == "tail" else f"(?, {args.relation}, new)"
    print(f"top {len(answers)} for {query}")
    for a in answers:
        print(f"{a['rank']:>4}   {a['score']:>10.4f}  {a['entity']}  {a['name'][:60]}")
    return 0


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
    from vlkge.training.run import resolve_device

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


def cmd_zero_shot(args: argparse.Namespace) -> int:
    from vlkge.evaluation.zero_shot import run_zero_shot
    from vlkge.reports.tables import metrics_table

    cfg = config_mod.load_config(args.config, args.set)
    metrics = run_zero_shot(cfg, args.out, progress=sys.stderr.isatty())
    for split in cfg["evaluation"]["splits"]:
        print(metrics_table(metrics[split], split))
    print(f"run folder: {args.out}")
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


def cmd_export(args: argparse.Namespace) -> int:
    from vlkge.export import export_embeddings
    from vlkge.training.run import load_run

    cfg, kg, model = load_run(args.run, args.checkpoint)
    for path in export_embeddings(cfg, kg, model, args.out):
        print(path)
    return 0


def cmd_neighbours(args: argparse.Namespace) -> int:
    from vlkge.export import nearest_entities
    from vlkge.training.run import load_run

    _, kg, model = load_run(args.run)
    found = nearest_entities(model, kg, args.entity, args.top_k)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    print(f"nearest to {args.entity} ({kg.display_name(kg.entity_id(args.entity))[:60]}), cosine")
    for n in found:
        print(f"{n['rank']:>4} {n['similarity']:>8.4f}  {n['entity']}  {n['name'][:60]}")
    return 0


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
    p.add_argument(
        "--only-unseen",
        action="store_true",
        help="score only triples touching an entity unseen in training (evaluation.only_unseen)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change how the run is evaluated: evaluation.*, model.neighbours, "
        "model.neighbour_temperature, device, num_threads, precision",
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
    p.add_argument(
        "--new-text",
        metavar="TEXT",
        help="a brand-new entity's text (encoded with the run's encoder)",
    )
    p.add_argument("--new-image", metavar="FILE", help="a brand-new entity's image")
    p.add_argument(
        "--direction",
        choices=["tail", "head"],
        help="for a new entity: tail ranks tails of (new, R, ?) (default), head ranks heads of "
        "(?, R, new)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "datasets",
        help="list named datasets, show a dataset's statistics, or write an inductive split",
    )
    p.add_argument("action", choices=["list", "info", "split-inductive"])
    p.add_argument("name", nargs="?")
    p.add_argument("--data-dir", help="folder searched before $VLKGE_DATA_DIR and the cache")
    p.add_argument(
        "--fraction", type=float, default=0.1, help="split-inductive: share of entities held out"
    )
    p.add_argument("--seed", type=int, default=42, help="split-inductive: sampling seed")
    p.add_argument("--out", metavar="DIR", help="split-inductive: the new dataset folder")
    p.add_argument(
        "--pairs",
        choices=["drop", "keep"],
        default="drop",
        help="split-inductive: triples between two held-out entities (keep: when both are in "
        "the same split)",
    )
    p.add_argument("--image-root", help="split-inductive: ImageNet folder for WN9-IMG images")
    p.add_argument("--force", action="store_true", help="split-inductive: overwrite --out")
    p.add_argument(
        "--inductive", action="store_true", help="info: allow entities unseen in training"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser(
        "encode", help="encode entity texts and images into a feature cache (or import features)"
    )
    p.add_argument("--dataset", help="named dataset or folder (default: dataset.name)")
    p.add_argument("--data-dir", help="folder searched before $VLKGE_DATA_DIR and the cache")
    p.add_argument(
        "--image-root", help="ImageNet-style image folder for WN9-IMG ($VLKGE_IMAGENET_DIR)"
    )
    p.add_argument(
        "--encoder",
        help="minilm (default), a CLIP/SigLIP/BLIP hub id or folder, a sentence-transformers "
        "model, or open_clip:ARCH/PRETRAINED (see encoder.name in vlkge config show)",
    )
    p.add_argument("--kind", choices=["hf", "sentence", "open_clip"], help="encoder family")
    p.add_argument(
        "--out", metavar="CACHE_DIR", help="feature cache folder (default: features.cache_dir)"
    )
    p.add_argument(
        "--modalities", nargs="+", choices=["text", "image"], help="default: the encoder's towers"
    )
    p.add_argument("--batch-size", type=int, help="texts or images per forward pass")
    p.add_argument("--workers", type=int, help="image decoding processes (0 = main process)")
    p.add_argument("--device", help="cpu | cuda | cuda:N | auto (default: the config's device)")
    p.add_argument("--text-features", metavar="FILE", help="import precomputed text features")
    p.add_argument("--image-features", metavar="FILE", help="import precomputed image features")
    p.add_argument("--ids", metavar="FILE", help="entity ids (one a line) of a feature matrix")
    p.add_argument("--config", help="YAML file overriding the defaults")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser(
        "zero-shot",
        help="evaluate the untrained vision-language baseline (prompt templates, no training)",
    )
    p.add_argument("--config", help="YAML file overriding the defaults (see zero_shot.*)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True, help="folder for config.yaml and metrics.json")
    p.set_defaults(func=cmd_zero_shot)

    p = sub.add_parser("config", help="show the documented defaults or a resolved config")
    p.add_argument("action", choices=["show"])
    p.add_argument("--config", help="a YAML file to resolve against the defaults")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--full",
        action="store_true",
        help="every key of a resolved config, documented (default: the keys that differ)",
    )
    p.add_argument("--space", action="store_true", help="the search-space format of vlkge tune")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("report", help="write a run's HTML report (metrics, curves, predictions)")
    p.add_argument("run", help="run folder (vlkge train or vlkge zero-shot)")
    p.add_argument("--out", metavar="FILE", help="HTML file (default: RUN/report.html)")
    p.add_argument(
        "--zero-shot",
        metavar="DIR",
        help="a zero-shot run shown beside the model (report.zero_shot)",
    )
    p.add_argument("--samples", type=int, help="sample queries shown (report.samples)")
    p.add_argument("--top-k", type=int, help="predictions per sample query (report.top_k)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "compare", help="one table of several runs and the config keys they differ in"
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    p.add_argument("--split", choices=["train", "valid", "test"], help="default: test")
    p.add_argument("--html", metavar="FILE", help="also write the table as an HTML page")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "export", help="write entity and relation vectors (safetensors and TSV with ids)"
    )
    p.add_argument("run", help="run folder")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the exported files")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "neighbours",
        aliases=["neighbors"],
        help="entities nearest to an entity in the run's fused space (cosine)",
    )
    p.add_argument("run", help="run folder")
    p.add_argument("entity", help="entity id, as in the dataset's files")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_neighbours)

    p = sub.add_parser(
        "tune", help="hyper-parameter search on Optuna: trials are run folders, resumable, parallel"
    )
    p.add_argument("folder", nargs="?", help="a search folder, with --show")
    p.add_argument("--config", help="the base config every trial starts from")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--space", metavar="FILE", help="the search space (format: vlkge config show --space)"
    )
    p.add_argument("--trials", type=int, help="trials in the study (the grid's size for grid)")
    p.add_argument("--out", metavar="DIR", help="the search folder (trials/, report.html, ...)")
    p.add_argument(
        "--storage",
        metavar="URL",
        help="the study's database: a SQLAlchemy URL, e.g. postgresql://USER@HOST/DB to share "
        "a study between hosts (default: sqlite:///DIR/study.db)",
    )
    p.add_argument("--study", help="the study's name in the database (default: DIR's name)")
    p.add_argument("--workers", type=int, default=1, help="trial processes (cores shared)")
    p.add_argument(
        "--timeout", type=float, metavar="S", help="stop after S seconds (trials saved, re-queued)"
    )
    p.add_argument("--resume", metavar="DIR", help="continue the search in DIR")
    p.add_argument("--show", action="store_true", help="print the trials table of DIR")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser(
        "serve", help="an interactive page and a JSON API over trained runs (FastAPI, uvicorn)"
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders, each loaded once")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (a warning if not local)")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument(
        "--token", help="require this token (header X-Vlkge-Token, ?token= or the page's cookie)"
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        help="largest request body in MiB, an uploaded image included (docs/serving.md)",
    )
    p.add_argument(
        "--max-pixels", type=int, help="largest uploaded image in pixels (docs/serving.md)"
    )
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        if not sys.stderr.isatty():
            return args.func(args)
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm():  # log lines above the progress bars, not through them
            return args.func(args)
    except VlkgeError as exc:
        print(f"vlkge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Interrupted says what was saved, and which signal
        signum = getattr(exc, "signum", signal.SIGINT)
        word = "terminated" if signum == signal.SIGTERM else "interrupted"
        print(f"vlkge: {word}{f': {exc}' if str(exc) else ''}", file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except OSError as exc:  # a path that cannot be created, read or written
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"vlkge: error: {where}{exc.strerror or ' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
