"""The run report: one self-contained HTML file (styles inline, figures and thumbnails as
``data:`` URIs) that a person can open, mail or archive without the run folder.

Sections: summary, metrics per split (both sides, each side, per relation), training curves,
per-relation MRR bars, modality coverage of the dataset, qualitative predictions (the model's
top-k beside the zero-shot baseline's) and the configuration. A section whose inputs are missing
(no validation, no trace, a structural model, a zero-shot run, an encoder that cannot be loaded)
says so instead of failing the report. This module gathers what the page shows; the page itself
is ``templates/report.html.j2`` (docs/reports.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

from vlkge import config as config_mod
from vlkge.data.graph import KnowledgeGraph
from vlkge.errors import VlkgeError
from vlkge.files import write_text
from vlkge.reports import plots
from vlkge.reports.runs import RunFolder, read_run
from vlkge.reports.samples import EntityViews, Query, pick_queries, predict
from vlkge.reports.templating import render

log = logging.getLogger(__name__)


def model_kind(run: RunFolder, cfg: dict) -> str:
    """The model in a few words: backbone, width, parts and fusion (or the zero-shot
    baseline)."""
    model = cfg["model"]
    if run.zero_shot:
        return "zero-shot baseline"
    parts = ["structure"] if model["structural"] else []
    parts += list(model["modalities"])
    kind = f"{model['backbone']}, d {model['dim']}, {' + '.join(parts)}"
    if model["modalities"]:
        kind += f" ({model['fusion']} fusion)"
    return kind


def coverage(kg: KnowledgeGraph) -> dict[str, int]:
    """Entities with image and text, one of them, or neither (all of them without a
    manifest)."""
    if kg.manifest is None:
        return {"both": 0, "text_only": 0, "image_only": 0, "neither": kg.num_entities}
    return kg.manifest.coverage(kg.entities)


def render_report(
    run: RunFolder,
    cfg: dict,
    kg: KnowledgeGraph,
    baseline: RunFolder | None,
    queries: list[Query],
    notes: list[str],
    top_k: int,
) -> str:
    """The report page of ``run``: its figures drawn, its sections filled from what was
    loaded (``notes`` say why something is missing)."""
    split = run.main_split()
    per_relation, other = {}, None
    if split is not None:
        per_relation = run.metrics[split].get("per_relation", {})
        if baseline is not None and split in baseline.splits:
            other = baseline.metrics[split].get("per_relation")
    counts = coverage(kg)
    return render(
        "report.html.j2",
        title=f"vlkge report: {run.name}",
        run=run,
        cfg=cfg,
        kg=kg,
        baseline=baseline,
        kind=model_kind(run, cfg),
        validated=any("valid" in epoch for epoch in run.trace),
        curves=plots.training_curves(run.trace, cfg["validation"]["metric"]),
        relation_bars=plots.relation_bars(per_relation, other),
        coverage=counts,
        coverage_labels=plots.COVERAGE_LABELS,
        coverage_bars=plots.coverage_bars(counts),
        queries=queries,
        views=EntityViews(kg),
        notes=notes,
        top_k=top_k,
        changed_config=config_mod.documented(cfg, config_mod.changed_keys(cfg)),
        full_config=config_mod.documented(cfg),
    )


def write_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    zero_shot: str | Path | None = None,
    samples: int | None = None,
    top_k: int | None = None,
    model=None,
    kg: KnowledgeGraph | None = None,
    cfg: dict | None = None,
    encoder=None,
) -> Path:
    """Write the report of the run in ``run_dir`` to ``out`` (default ``run_dir/report.html``)
    and return its path.

    ``zero_shot`` (default ``report.zero_shot``) is a zero-shot run folder shown beside the
    model; ``samples`` and ``top_k`` override ``report.samples`` / ``report.top_k``. ``model``
    and ``kg`` (with ``cfg``) reuse what the caller has loaded (the end of ``vlkge train``);
    ``encoder`` replaces ``encoder.name`` for zero-shot prompts.
    """
    run = read_run(run_dir)
    cfg = cfg or run.cfg
    settings = cfg["report"]
    samples = settings["samples"] if samples is None else samples
    k = settings["top_k"] if top_k is None else top_k
    if samples < 0 or k < 1:
        raise VlkgeError(f"report needs samples >= 0 and top-k >= 1, not {samples} and {k}")
    notes: list[str] = []
    scorers = {}
    own = "zero-shot" if run.zero_shot else "model"
    if samples and (run.zero_shot or model is None):
        kg, scorer = _load_scorer(run, encoder, notes)
        if scorer is not None:
            scorers[own] = scorer
    elif samples and (scorer := _final_scorer(run, cfg, kg, model, notes)) is not None:
        scorers[own] = scorer
    if kg is None:
        from vlkge.data.datasets import load_graph

        kg = load_graph(cfg["dataset"], quiet=True)
    baseline = None
    baseline_dir = zero_shot or settings["zero_shot"]
    if baseline_dir and not run.zero_shot:
        baseline = _read_baseline(baseline_dir, cfg)
        scorer = _baseline_scorer(baseline, kg, encoder, notes) if samples else None
        if scorer is not None:
            scorers["zero-shot"] = scorer
    split = run.main_split() or "test"
    queries = pick_queries(kg, cfg, split, samples) if scorers else []
    for name, scorer in scorers.items():
        predict(queries, kg, name, scorer, k)
    out = Path(out) if out is not None else run.path / "report.html"
    write_text(out, render_report(run, cfg, kg, baseline, queries, notes, k))
    return out


def _load_scorer(run: RunFolder, encoder, notes: list[str]):
    """``(graph, scorer)`` of the run's own model; on failure a note, ``(None, None)``."""
    try:
        if run.zero_shot:
            from vlkge.evaluation.zero_shot import load_zero_shot

            _, kg, zero = load_zero_shot(run.path, encoder)
            return kg, zero.scorer()
        from vlkge.training.setup import load_run

        cfg, kg, model = load_run(run.path)
    except VlkgeError as exc:
        notes.append(f"no predictions: the run's model could not be loaded ({exc})")
        log.warning("report: %s", notes[-1])
        return None, None
    return kg, _final_scorer(run, cfg, kg, model, notes)


def _final_scorer(run: RunFolder, cfg: dict, kg: KnowledgeGraph, model, notes: list[str]):
    """The run's scorer as its metrics.json records it, as ``vlkge predict`` ranks (a note
    names its blends); on failure a note, ``None``."""
    from vlkge.training.final import recorded_scorer

    try:
        scorer, stages = recorded_scorer(run.path, cfg, kg, model, run.metrics)
    except VlkgeError as exc:
        notes.append(f"no predictions: the run's scorer could not be rebuilt ({exc})")
        log.warning("report: %s", notes[-1])
        return None
    if stages:
        notes.append(f"ranked as the run was evaluated: the model + {' + '.join(stages)}")
    return scorer


def _read_baseline(folder: str | Path, cfg: dict) -> RunFolder:
    baseline = read_run(folder)
    if not baseline.zero_shot:
        raise VlkgeError(f"{folder}: not a zero-shot run (its metrics.json has no zero_shot block)")
    if baseline.cfg["dataset"]["name"] != cfg["dataset"]["name"]:
        raise VlkgeError(
            f"{folder}: a zero-shot run on dataset {baseline.cfg['dataset']['name']}, "
            f"not {cfg['dataset']['name']}"
        )
    return baseline


def _baseline_scorer(baseline: RunFolder, kg: KnowledgeGraph, encoder, notes: list[str]):
    from vlkge.evaluation.zero_shot import load_zero_shot

    try:
        _, other, zero = load_zero_shot(baseline.path, encoder)
    except VlkgeError as exc:
        notes.append(f"no zero-shot predictions: the baseline could not be loaded ({exc})")
        log.warning("report: %s", notes[-1])
        return None
    if other.entities != kg.entities:
        notes.append("no zero-shot predictions: the baseline's graph has other entity ids")
        return None
    return zero.scorer()


def write_report_safely(run_dir: str | Path) -> None:
    """The end-of-training report (``report.after_train``): the run is finished, so a failure
    here only warns."""
    try:
        path = write_report(run_dir)
    except Exception as exc:  # any failure: a report must never lose a finished run
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.warning("report not written (%s: %s); metrics.json is kept", type(exc).__name__, reason)
        return
    log.info("report: %s", path)
