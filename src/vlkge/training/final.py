"""A run's final scorer: the model, then its hubness calibration and blends (a partner run,
the zero-shot and lexical baselines), each weight per relation and side fit on validation when
the run is evaluated (:func:`evaluate_run`) and rebuilt from ``metrics.json`` for ``predict``,
``serve`` and the reports (:func:`recorded_scorer`); docs/method.md, "The run's final scorer"."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from vlkge import config as config_mod
from vlkge.data.graph import KnowledgeGraph
from vlkge.encoders.base import Encoder
from vlkge.errors import ConfigError, VlkgeError
from vlkge.evaluation.blend import blended, recorded_weights
from vlkge.evaluation.calibration import load_penalties, penalty_scorer, save_penalties
from vlkge.evaluation.evaluator import Evaluator, model_scorer
from vlkge.evaluation.ranking import ScoreFn
from vlkge.evaluation.zero_shot import configured_scorer, lexical_scorer
from vlkge.models.model import KGEModel
from vlkge.precision import model_device
from vlkge.runfolder import METRICS, PENALTIES, read_metrics
from vlkge.training.setup import load_run

log = logging.getLogger(__name__)


def evaluate_run(
    cfg: dict,
    kg: KnowledgeGraph,
    model: KGEModel,
    splits,
    progress: bool = False,
    paper_protocol: bool | None = None,
    evaluator: Evaluator | None = None,
    folder: Path | None = None,
) -> dict:
    """Metrics of ``model`` on ``splits``; ``paper_protocol`` (true or false) replaces the
    run's ranking protocol by the reference's (merged filter, id-ordered ties) or the default
    one (:func:`vlkge.config.with_protocol`) without changing the model. ``evaluator`` reuses
    one already built for the run's own protocol (its filter index); into ``folder`` (the
    run's, when ``vlkge train`` evaluates it) the calibration's hub penalties are written."""
    if evaluator is None:
        settings = cfg["evaluation"]
        if paper_protocol is not None:
            settings = config_mod.with_protocol(settings, paper_protocol)
        evaluator = Evaluator(kg, settings, precision=cfg["precision"])
    model.eval()  # the final evaluation: one entity table for every split (and the fits)
    scorer, out = run_scorer(cfg, kg, model, evaluator, progress, folder=folder)
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
    folder: Path | None = None,
    encoders: Callable[[dict, str], Encoder] | None = None,
) -> tuple[ScoreFn, dict]:
    """The scorer a run's metrics describe: ``model``, then each stage of :data:`STAGES` that
    ``cfg["evaluation"]`` turns on, its weights per relation and side fit on its split; with
    ``recorded`` (a run's ``metrics.json``), the stages and weights recorded there instead,
    nothing fit (what ``vlkge predict`` and ``vlkge serve`` rank with). Also each stage's
    summary for ``metrics.json``. ``table``: the model's entity table, if already computed.
    ``folder``: the run folder, where the calibration's hub penalties are written when fit and
    read from when recorded (:func:`_hub_scorer`). ``encoders`` (``cfg, name -> encoder``,
    :class:`vlkge.predict.RunEncoders`) builds the zero-shot baseline's encoder."""
    out: dict = {}
    fit = recorded is None
    with torch.no_grad():
        scorer = model_scorer(model, evaluator.precision, table)
        for key in STAGES:
            if not fit:  # as recorded: its summary holds the second scorer's settings
                if not (what := recorded.get(key)):
                    continue
                weights = _recorded_weights(key, what, kg)
            else:
                settings = getattr(evaluator, key)
                if not settings["weights"] or (key == "run_blend" and not settings["run"]):
                    continue
                evaluator.triples(settings["split"])  # no such split: before building anything
                what = {k: settings[k] for k in SECOND_SCORER.get(key, {})}
            other, kept = _second_scorer(
                key, cfg, kg, model, evaluator, scorer, what, progress, folder, fit, encoders
            )
            if fit:
                scorer, summary = evaluator.blend(scorer, other, key)
                out[key] = {**summary, **what, **kept}
            else:
                scorer, out[key] = blended(scorer, other, weights, key), what
    return scorer, out


def _hub_scorer(
    evaluator: Evaluator, scorer: ScoreFn, what: dict, folder: Path | None, fit: bool
) -> tuple[ScoreFn, dict]:
    """The calibration's second scorer, the negated hub penalties of ``scorer`` at ``what``'s
    temperature: for a recorded stage, read from the run ``folder``'s
    :data:`~vlkge.runfolder.PENALTIES` when they are those the record names
    (``penalties_sha256``), else computed; when ``fit`` with a ``folder``, also written there,
    and the record of them returned for the stage's summary."""
    shape = (evaluator.kg.num_relations, evaluator.kg.num_entities)
    penalties = None
    if not fit and folder is not None and "penalties_sha256" in what:
        sha256 = what["penalties_sha256"]
        penalties = load_penalties(folder / PENALTIES, sha256, evaluator.sides, shape)
    if penalties is None:
        penalties = evaluator.hub_penalties(scorer, what["temperature"])
    kept = {}
    if fit and folder is not None:
        kept = {"penalties_sha256": save_penalties(folder / PENALTIES, penalties)}
    return penalty_scorer(penalties), kept


def recorded_scorer(
    run_dir: str | Path,
    cfg: dict,
    kg: KnowledgeGraph,
    model: KGEModel,
    metrics: dict | None = None,
    table: torch.Tensor | None = None,
    encoders: Callable[[dict, str], Encoder] | None = None,
) -> tuple[ScoreFn, list[str]]:
    """The final scorer of the run in ``run_dir`` as its ``metrics.json`` records it
    (:func:`run_scorer`; the model alone where the run has not finished) and the stages it
    blends in: ``vlkge predict`` and ``vlkge serve`` rank as the run was evaluated.
    ``metrics`` and ``table``: that file's contents and the model's entity table, where the
    caller has them already; ``encoders``: as for :func:`run_scorer`."""
    folder = Path(run_dir)
    if metrics is None:
        metrics = read_metrics(folder) if (folder / METRICS).is_file() else {}
    evaluator = Evaluator(kg, cfg["evaluation"], precision=cfg["precision"])
    try:
        scorer, stages = run_scorer(
            cfg,
            kg,
            model,
            evaluator,
            recorded=metrics,
            table=table,
            folder=folder,
            encoders=encoders,
        )
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
    folder: Path | None = None,
    fit: bool = False,
    encoders: Callable[[dict, str], Encoder] | None = None,
) -> tuple[ScoreFn, dict]:
    """Stage ``key``'s second scorer, for the stage being ``fit`` or as recorded; ``what``
    holds its :data:`SECOND_SCORER` settings (or its record). Also what the stage's summary
    gains beside them (the calibration's kept penalties, :func:`_hub_scorer`)."""
    if key == "calibration":
        return _hub_scorer(evaluator, scorer, what, folder, fit)
    if key == "run_blend":
        partner = blend_partner(kg, str(what["run"]), model_device(model))
        return model_scorer(partner, evaluator.precision), {}
    if key == "zero_shot_blend":  # the encoder is built (imported) only here
        encoder = encoders(cfg, cfg["encoder"]["name"]) if encoders is not None else None
        return configured_scorer(cfg, kg, encoder, progress).scorer(), {}
    return lexical_scorer(cfg, kg).scorer(), {}


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
