"""The ``vlkge`` argument parser: one sub-parser per command, each bound to its ``cmd_*``."""

from __future__ import annotations

import argparse

from vlkge import __version__
from vlkge.cli.data import cmd_config, cmd_datasets, cmd_encode
from vlkge.cli.inference import cmd_export, cmd_neighbours, cmd_predict
from vlkge.cli.runs import cmd_compare, cmd_evaluate, cmd_report, cmd_train, cmd_zero_shot
from vlkge.cli.services import cmd_serve, cmd_tune
from vlkge.runfolder import CHECKPOINTS
from vlkge.terms import MODALITIES, SIDES, SPLITS


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
    p.add_argument("--split", default="test", choices=SPLITS)
    p.add_argument(
        "--ties", help="the tie rule, as evaluation.ties (default: the run's; vlkge config show)"
    )
    p.add_argument("--checkpoint", default="best", choices=CHECKPOINTS)
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
        help="change how the run is evaluated: evaluation.*, zero_shot.*, model.neighbours, "
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
        "--model-only",
        action="store_true",
        help="rank with the model alone, not with the calibration and blends its metrics.json "
        "records (the default: the scorer the run was evaluated with)",
    )
    p.add_argument(
        "--new-text",
        metavar="TEXT",
        help="a brand-new entity's text (encoded with the run's encoder)",
    )
    p.add_argument("--new-image", metavar="FILE", help="a brand-new entity's image")
    p.add_argument(
        "--new-name",
        metavar="NAME",
        help="a brand-new entity's name: read by the lexical baseline, and by the encoder "
        "where encoder.text_template uses {name}",
    )
    p.add_argument(
        "--direction",
        choices=SIDES,
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
    p.add_argument("--kind", help="encoder family (default: guessed from --encoder)")
    p.add_argument(
        "--out", metavar="CACHE_DIR", help="feature cache folder (default: features.cache_dir)"
    )
    p.add_argument(
        "--modalities", nargs="+", choices=MODALITIES, help="default: the encoder's towers"
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
    p.add_argument("--split", choices=SPLITS, help="default: test")
    p.add_argument("--html", metavar="FILE", help="also write the table as an HTML page")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "export", help="write entity and relation vectors (safetensors and TSV with ids)"
    )
    p.add_argument("run", help="run folder")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the exported files")
    p.add_argument("--checkpoint", default="best", choices=CHECKPOINTS)
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
