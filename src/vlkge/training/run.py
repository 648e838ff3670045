"""A run from config to ``metrics.json``: load data, build the model, train, select, evaluate.

Also loads a finished run folder back (config, graph, best model) for ``evaluate`` and
``predict``.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from vlkge import config as config_mod
from vlkge import distributed
from vlkge.allocator import keep_freed_memory
from vlkge.checkpoint import load_weights
from vlkge.data.datasets import load_graph
from vlkge.data.graph import KnowledgeGraph
from vlkge.errors import ConfigError, VlkgeError, echo
from vlkge.evaluation.blend import blended, recorded_weights
from vlkge.evaluation.evaluator import Evaluator, model_scorer
from vlkge.evaluation.ranking import ScoreFn
from vlkge.evaluation.zero_shot import configured_scorer, lexical_scorer, prompt_templates
from vlkge.files import write_text
from vlkge.models.backbones.kernels import configure_kernels
from vlkge.models.factory import build_model, warn_large_margin
from vlkge.models.features import Features, cache_encoders, feature_cache_dir, load_features
from vlkge.models.model import KGEModel
from vlkge.models.sharded import entity_shard
from vlkge.precision import model_device, set_matmul_precision
from vlkge.runfolder import (
    CONFIG,
    METRICS,
    absolute_paths,
    new_run,
    read_metrics,
    require_run_folder,
    write_metrics,
)
from vlkge.training.sharded import restore_best, shard_if_asked, shard_of
from vlkge.training.trainer import EpochCallback, Trainer, show_progress

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VlkgeError(f"device {echo(name, quote=False)} requested but CUDA is not available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"device: unknown device {echo(name)} (cpu, cuda, cuda:N or auto)"
        ) from None


def check_splits(cfg: dict, kg: KnowledgeGraph) -> None:
    """Fail before training when the config evaluates a split the dataset does not have."""
    wanted = {"evaluation.splits": cfg["evaluation"]["splits"]}
    if cfg["validation"]["every"]:
        wanted["validation.split"] = [cfg["validation"]["split"]]
    for key, splits in wanted.items():
        missing = [s for s in splits if s not in kg.splits]
        if missing:
            raise ConfigError(
                f"{key}: dataset {kg.name} has no {missing[0]} split (it has "
                f"{', '.join(kg.splits)})"
            )


def configure_process(cfg: dict) -> None:
    """Apply a run's process-wide settings: threads, denormals, allocator, seed, kernels, CUDA's
    float32 products."""
    if cfg["num_threads"]:
        torch.set_num_threads(cfg["num_threads"])
    # sparse gradients of large tables are full of denormal floats, which run 10x slower on
    # x86 (the projection's weight gradient of a multimodal model: 0.62 -> 0.25 s per batch)
    torch.set_flush_denormal(True)
    keep_freed_memory()
    seed_everything(cfg["seed"])
    configure_kernels(cfg["compile"])
    set_matmul_precision(cfg["precision"])


def prepare(
    cfg: dict,
    features: Features | None = None,
    quiet: bool = False,
    kg: KnowledgeGraph | None = None,
    configure: bool = True,
) -> tuple[KnowledgeGraph, KGEModel]:
    """The graph and a freshly initialised model (seeded).

    A multimodal model (``model.modalities``) reads its frozen features from
    ``features.cache_dir`` unless a ``features`` dict is given; ``quiet``: a trained run's
    graph, whose findings its training reported (:func:`vlkge.data.datasets.load_graph`);
    ``kg``: a graph already in memory instead of ``dataset`` (a benchmark's synthetic one);
    ``configure``: apply the config's process-wide settings first (:func:`configure_process`;
    off for a second model built beside the first, whose settings must stay).
    """
    if configure:
        configure_process(cfg)
    kg = load_graph(cfg["dataset"], quiet) if kg is None else kg
    model_cfg = cfg["model"]
    towers = None
    if cfg["encoder"]["finetune"] != "none" and model_cfg["modalities"]:
        towers = build_tuned_towers(cfg, kg)
        features = {m: (tower().detach(), tower.mask) for m, tower in towers.items()}
    elif features is None and model_cfg["modalities"]:
        features = load_features(
            feature_cache_dir(cfg, kg), kg, model_cfg["modalities"], cfg["features"]["dtype"]
        )
    model = build_model(
        model_cfg,
        kg,
        features,
        model_cfg["reference_fusion"],
        towers,
        features_cfg=cfg["features"],
        shard=shard_of(cfg),  # sharded tables: this rank's rows only
    )
    return kg, model


def build_tuned_towers(cfg: dict, kg: KnowledgeGraph) -> dict:
    """Fine-tuned encoder towers (``encoder.finetune``) over the dataset's own texts/images."""
    from vlkge.encoders import build_encoder
    from vlkge.encoders.cache.policy import encoder_manifest
    from vlkge.encoders.tuning import build_towers

    settings = cfg["encoder"]
    manifest = encoder_manifest(cfg, kg)
    if manifest is None:
        raise VlkgeError(
            f"encoder.finetune needs the texts/images of dataset {kg.name} (no manifest.tsv)"
        )
    encoder = build_encoder(
        settings["name"], device=resolve_device(cfg["device"]), batch_size=settings["batch_size"]
    )
    log.info("fine-tuning %s of encoder %s", settings["finetune"], encoder.name)
    return build_towers(
        encoder,
        manifest,
        kg.entities,
        cfg["model"]["modalities"],
        settings["finetune"],
        settings["finetune_layers"],
        settings["workers"],
    )


def evaluate_run(
    cfg: dict,
    kg: KnowledgeGraph,
    model: KGEModel,
    splits,
    progress: bool = False,
    paper_protocol: bool | None = None,
    evaluator: Evaluator | None = None,
) -> dict:
    """Metrics of ``model`` on ``splits``; ``paper_protocol`` (true or false) replaces the
    run's ranking protocol by the reference's (merged filter, id-ordered ties) or the default
    one (:func:`vlkge.config.with_protocol`) without changing the model. ``evaluator`` reuses
    one already built for the run's own protocol (its filter index)."""
    if evaluator is None:
        settings = cfg["evaluation"]
        if paper_protocol is not None:
            settings = config_mod.with_protocol(settings, paper_protocol)
        evaluator = Evaluator(kg, settings, precision=cfg["precision"])
    model.eval()  # the final evaluation: one entity table for every split (and the fits)
    scorer, out = run_scorer(cfg, kg, model, evaluator, progress)
    for split in splits:
        start = time.perf_counter()
        with torch.no_grad():
            out[split] = evaluator.evaluate_scores(scorer, split, progress)
        log.info(
            "%s: MRR %.4f  H@1 %.4f  H@3 %.4f  H@10 %.4f  (%.1fs)",
            split,
            out[split]["both"]["mrr"],
            out[split]["both"]["hits@1"],
            out[split]["both"]["hits@3"],
            out[split]["both"]["hits@10"],
            time.perf_counter() - start,
        )
    out["ties"] = evaluator.ties
    return out


#: the second scorers of a run's final scorer, in the order they apply (docs/method.md, "The
#: run's final scorer"): the hubness calibration, the partner run, the zero-shot and lexical
#: baselines
STAGES = ("calibration", "run_blend", "zero_shot_blend", "lexical_blend")
#: what a stage's summary in metrics.json records of its second scorer, beside the weights
SECOND_SCORER: dict[str, dict[str, type | tuple[type, ...]]] = {
    "calibration": {"temperature": (int, float)},
    "run_blend": {"run": str},
}


def run_scorer(
    cfg: dict,
    kg: KnowledgeGraph,
    model: KGEModel,
    evaluator: Evaluator,
    progress: bool = False,
    recorded: dict | None = None,
    table: torch.Tensor | None = None,
) -> tuple[ScoreFn, dict]:
    """The scorer a run's metrics describe: ``model``, then each stage of :data:`STAGES` that
    ``cfg["evaluation"]`` turns on, its weights per relation and side fit on its split; with
    ``recorded`` (a run's ``metrics.json``), the stages and weights recorded there instead,
    nothing fit (what ``vlkge predict`` and ``vlkge serve`` rank with). Also each stage's
    summary for ``metrics.json``. ``table``: the model's entity table, if already computed."""
    out: dict = {}
    with torch.no_grad():
        scorer = model_scorer(model, evaluator.precision, table)
        for key in STAGES:
            if recorded is not None:
                if summary := recorded.get(key):
                    weights = _recorded_weights(key, summary, kg)
                    other = _second_scorer(key, cfg, kg, model, evaluator, scorer, summary)
                    scorer, out[key] = blended(scorer, other, weights), summary
                continue
            settings = getattr(evaluator, key)
            if not settings["weights"] or (key == "run_blend" and not settings["run"]):
                continue
            evaluator.triples(settings["split"])  # no such split: before building anything
            what = {k: settings[k] for k in SECOND_SCORER.get(key, {})}
            other = _second_scorer(key, cfg, kg, model, evaluator, scorer, what, progress)
            scorer, summary = evaluator.blend(scorer, other, key)
            out[key] = {**summary, **what}
    return scorer, out


def recorded_scorer(
    run_dir: str | Path,
    cfg: dict,
    kg: KnowledgeGraph,
    model: KGEModel,
    table: torch.Tensor | None = None,
) -> tuple[ScoreFn, list[str]]:
    """The final scorer of the run in ``run_dir`` as its ``metrics.json`` records it
    (:func:`run_scorer`; the model alone where the run has not finished) and the stages it
    blends in: ``vlkge predict`` and ``vlkge serve`` rank as the run was evaluated. ``table``:
    the model's entity table, if already computed."""
    folder = Path(run_dir)
    recorded = read_metrics(folder) if (folder / METRICS).is_file() else {}
    evaluator = Evaluator(kg, cfg["evaluation"], precision=cfg["precision"])
    try:
        scorer, stages = run_scorer(cfg, kg, model, evaluator, recorded=recorded, table=table)
    except VlkgeError as exc:
        raise VlkgeError(f"{folder / METRICS}: {exc}") from None
    return scorer, list(stages)


def _recorded_weights(key: str, summary: object, kg: KnowledgeGraph) -> dict[str, torch.Tensor]:
    """The weights of stage ``key``'s record in a metrics.json, checked (a file may be edited)."""
    needs = {"weights": dict, **SECOND_SCORER.get(key, {})}
    if not isinstance(summary, dict) or any(
        not isinstance(summary.get(k), kind) for k, kind in needs.items()
    ):
        raise VlkgeError(f"{key}: expected a record with {', '.join(needs)}")
    return recorded_weights(summary["weights"], kg.relations)


def _second_scorer(
    key: str,
    cfg: dict,
    kg: KnowledgeGraph,
    model: KGEModel,
    evaluator: Evaluator,
    scorer: ScoreFn,
    what: dict,
    progress: bool = False,
) -> ScoreFn:
    """Stage ``key``'s second scorer; ``what`` holds its :data:`SECOND_SCORER` settings."""
    if key == "calibration":
        return evaluator.hub_scorer(scorer, what["temperature"])
    if key == "run_blend":
        partner = blend_partner(kg, str(what["run"]), model_device(model))
        return model_scorer(partner, evaluator.precision)
    if key == "zero_shot_blend":  # the encoder is built (imported) only here
        return configured_scorer(cfg, kg, progress=progress).scorer()
    return lexical_scorer(cfg, kg).scorer()


@contextlib.contextmanager
def partner_errors() -> Iterator[None]:
    """A partner run that cannot be loaded: its one-line error, naming the key."""
    try:
        yield
    except VlkgeError as exc:
        raise ConfigError(f"evaluation.run_blend.run: {exc}") from None


def blend_partner(kg: KnowledgeGraph, folder: str, device: torch.device) -> KGEModel:
    """The selected model of ``evaluation.run_blend.run``, which must have been trained on
    ``kg`` (the same entities and relations, in the same order), on ``device``."""
    with partner_errors():
        _, other_kg, partner = load_run(folder, configure=False)  # this run's threads stay
    if other_kg.entities != kg.entities or other_kg.relations != kg.relations:
        raise ConfigError(
            f"evaluation.run_blend.run: {folder} was trained on {other_kg.name} "
            f"({other_kg.num_entities} entities, {other_kg.num_relations} relations), not on "
            f"this run's graph {kg.name} ({kg.num_entities} entities, {kg.num_relations} "
            "relations)"
        )
    return partner.to(device)


def train(
    cfg: dict,
    run_dir: str | Path,
    features: Features | None = None,
    on_epoch: EpochCallback | None = None,
) -> dict:
    """Train and evaluate as configured; writes the run folder and returns the metrics.

    ``features`` replaces the feature cache of a multimodal model (see :func:`prepare`);
    ``on_epoch`` sees every epoch's trace entry and may stop training there (:class:`Trainer`).
    Launched by ``torchrun`` with several processes, the run is data-parallel
    (:mod:`vlkge.distributed`): rank 0 writes the run folder and every rank returns
    its metrics.
    """
    device = distributed.device_for_rank(resolve_device(cfg["device"]))
    with distributed.session(device):
        return _train(cfg, Path(run_dir), device, features, on_epoch)


def _train(
    cfg: dict,
    run_dir: Path,
    device: torch.device,
    features: Features | None,
    on_epoch: EpochCallback | None,
) -> dict:
    """Rank 0 holds the run folder's lock throughout, and writes ``config.yaml`` only once
    training starts: a run that fails before (a bad dataset) leaves nothing that blocks a
    rerun with the fixed config."""
    cfg = absolute_paths(cfg)
    if not distributed.is_main():
        return _train_in(cfg, run_dir, device, features, on_epoch)
    with new_run(run_dir, cfg):
        return _train_in(cfg, run_dir, device, features, on_epoch)


def _train_in(
    cfg: dict,
    run_dir: Path,
    device: torch.device,
    features: Features | None,
    on_epoch: EpochCallback | None,
) -> dict:
    main = distributed.is_main()
    kg, model = prepare(cfg, features)
    check_splits(cfg, kg)
    if cfg["evaluation"]["run_blend"]["run"]:  # hours of training before it is loaded
        with partner_errors():
            require_run_folder(cfg["evaluation"]["run_blend"]["run"])
    if cfg["evaluation"]["zero_shot_blend"]["weights"]:  # likewise before it is built
        prompt_templates(cfg, kg)
    if main or entity_shard(model) is not None:  # sharded: every rank serves its rows
        warn_large_margin(model, kg.train, cfg["training"]["loss"], report=main)
    shard_if_asked(cfg, model)  # on the host: the device holds only this rank's rows
    model.to(device)
    evaluator = Evaluator(kg, cfg["evaluation"], precision=cfg["precision"])
    trainer = Trainer(cfg, kg, model, run_dir, evaluator, on_epoch)
    if main:
        write_text(run_dir / CONFIG, config_mod.dump(cfg))
    best = trainer.fit()
    train_time = trainer.train_time()
    if trainer.rows is not None:  # sharded tables: every rank holds and ranks its rows
        restore_best(trainer.best_path, model)
    elif not main:  # rank 0 evaluates and writes; the others wait for its metrics
        return distributed.broadcast_object(None)
    else:
        load_weights(model, run_dir / "checkpoints" / "best.pt")
    metrics = evaluate_run(
        cfg,
        kg,
        model,
        cfg["evaluation"]["splits"],
        show_progress(cfg["training"]["progress"]) and main,
        evaluator=evaluator,
    )
    if not main:
        return distributed.broadcast_object(None)
    metrics["best_epoch"] = best["epoch"]
    metrics["train_time_s"] = train_time
    if cfg["model"]["modalities"] and features is None and cfg["encoder"]["finetune"] == "none":
        metrics["features"] = cache_encoders(feature_cache_dir(cfg, kg), cfg["model"]["modalities"])
    write_metrics(run_dir, metrics)
    log.info(
        "trained in %.1fs (selected epoch %d); run folder %s", train_time, best["epoch"], run_dir
    )
    return distributed.broadcast_object(metrics)


#: config keys a trained run may change when it is loaded: how it is evaluated and where it
#: runs, and the inference-only borrowing of unseen entities (no trained weight depends on them)
INFERENCE_KEYS = (
    "evaluation.",
    "zero_shot.",  # the baselines of evaluation.zero_shot_blend and lexical_blend
    "model.neighbours",
    "model.neighbour_temperature",
    "device",
    "num_threads",
    "precision",
)


def load_run(
    run_dir: str | Path,
    checkpoint: str = "best",
    overrides: list[str] | tuple = (),
    configure: bool = True,
) -> tuple[dict, KnowledgeGraph, KGEModel]:
    """Config, graph and model (weights from ``checkpoints/<checkpoint>.pt``) of a run folder;
    ``overrides`` (``key=value``) may change the :data:`INFERENCE_KEYS` of its config;
    ``configure``: apply its threads, seed and kernels to the process (see :func:`prepare`)."""
    run_dir = require_run_folder(run_dir)
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        if not config_mod.key_in(key, INFERENCE_KEYS):
            raise ConfigError(
                f"--set {echo(key, quote=False)}: a trained run's {echo(key, quote=False)} "
                "cannot change; evaluation may set "
                "evaluation.*, zero_shot.*, model.neighbours, model.neighbour_temperature, device, "
                "num_threads and precision"
            )
    cfg = config_mod.load_config(run_dir / CONFIG, overrides)
    kg, model = prepare(cfg, quiet=True, configure=configure)
    path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    load_weights(model, path)
    model.eval()
    return cfg, kg, model
