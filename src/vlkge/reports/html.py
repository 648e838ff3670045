"""The run report: one self-contained HTML file (styles inline, figures and thumbnails as
``data:`` URIs) that a person can open, mail or archive without the run folder.

Sections: summary, metrics per split (both sides, each side, per relation), training curves,
per-relation MRR bars, modality coverage of the dataset, qualitative predictions (the model's
top-k beside the zero-shot baseline's) and the configuration. A section whose inputs are missing
(no validation, no trace, a structural model, a zero-shot run, an encoder that cannot be loaded)
says so instead of failing the report.
"""

from __future__ import annotations

import datetime
import html
import logging
import math
from pathlib import Path

from vlkge import __version__
from vlkge import config as config_mod
from vlkge.data.graph import KnowledgeGraph
from vlkge.errors import VlkgeError
from vlkge.files import write_text
from vlkge.reports import plots
from vlkge.reports.runs import RunFolder, read_run
from vlkge.reports.samples import EntityViews, Query, model_scores, pick_queries, predict

log = logging.getLogger(__name__)

COLUMNS = ("mrr", "mr", "hits@1", "hits@3", "hits@10")
HEADINGS = ("MRR", "MR", "H@1", "H@3", "H@10")

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; color: #222; margin: 0 auto; max-width: 1180px;
  padding: 1.5em 2em 4em; }
h1 { margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.meta { color: #555; }
.cards { display: flex; gap: 1em; flex-wrap: wrap; margin: 1em 0; }
.card { border: 1px solid #ddd; border-radius: 8px; padding: .6em 1em; min-width: 7em; }
.card b { display: block; font-size: 1.5em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; }
th, td { padding: .25em .7em; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { border-bottom: 2px solid #bbb; }
tr.baseline td { color: #a0651b; }
img.plot { max-width: 100%; display: block; margin: .5em 0; }
.note { color: #777; font-style: italic; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: 13px; }
.query { border: 1px solid #ddd; border-radius: 8px; padding: .8em 1em; margin: 1em 0; }
.query h3 { margin: 0 0 .4em; font-size: 1.05em; }
.anchor { display: flex; gap: .8em; align-items: flex-start; color: #444; }
.rankings { display: flex; gap: 1.5em; flex-wrap: wrap; margin-top: .6em; }
.ranking { flex: 1 1 420px; }
.ranking h4 { margin: .2em 0; }
.ranking ol { list-style: none; padding: 0; margin: 0; }
.ranking li { display: flex; gap: .6em; align-items: flex-start; padding: .3em;
  border-radius: 6px; }
.ranking li.answer { background: #e3f4e6; outline: 2px solid #3a8f5c; }
.rank { font-weight: bold; min-width: 1.4em; }
.thumb, .nothumb { width: 64px; height: 64px; object-fit: cover; border-radius: 4px;
  flex: none; }
.nothumb { background: #eee; }
.label { color: #888; font-size: .85em; }
.text { color: #555; font-size: .85em; }
.badge { font-size: .75em; padding: 0 .4em; border-radius: 4px; margin-left: .3em; }
.badge.answer { background: #3a8f5c; color: white; }
.badge.known { background: #ddd; }
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n"
        f'<p class="meta">vlkge {esc(__version__)}, '
        f"{datetime.datetime.now().isoformat(timespec='seconds')}</p>\n</body>\n</html>\n"
    )


def number(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else esc(value)


def figure(uri: str | None, element_id: str, alt: str, missing: str) -> str:
    if uri is None:
        return f'<p class="note" id="{element_id}">{esc(missing)}</p>'
    return f'<img class="plot" id="{element_id}" alt="{esc(alt)}" src="{uri}">'


# --- sections ------------------------------------------------------------------------------
def summary_section(run: RunFolder, cfg: dict, kg: KnowledgeGraph | None) -> str:
    model = cfg["model"]
    kind = "zero-shot baseline" if run.zero_shot else f"{model['backbone']}, d {model['dim']}"
    if not run.zero_shot:
        parts = ["structure"] if model["structural"] else []
        parts += list(model["modalities"])
        kind += f", {' + '.join(parts)}"
        if model["modalities"]:
            kind += f" ({model['fusion']} fusion)"
    facts = [
        f"dataset <b>{esc(cfg['dataset']['name'])}</b> ({esc(cfg['dataset']['setting'])})",
        f"model <b>{esc(kind)}</b>",
    ]
    if run.encoder:
        facts.append(f'features from <b id="encoder">{esc(run.encoder)}</b>')
    if kg is not None:
        facts.append(f"{kg.num_entities:,} entities, {kg.num_relations} relations")
    if run.trace:
        facts.append(f"{len(run.trace)} epochs trained")
    if "best_epoch" in run.metrics:
        facts.append(f"selected epoch {run.metrics['best_epoch']}")
    if "train_time_s" in run.metrics:
        facts.append(f"training {run.metrics['train_time_s']:.1f}s")
    facts.append(f"ties {esc(run.metrics.get('ties', cfg['evaluation']['ties']))}")
    cards = ""
    split = run.main_split()
    if split is not None:
        both = run.metrics[split]["both"]
        cards = "".join(
            f'<div class="card">{esc(split)} {h}<b>{number(both[c], 3)}</b></div>'
            for c, h in zip(COLUMNS, HEADINGS, strict=True)
            if c != "mr"
        )
    return (
        f'<header id="summary"><h1>Run report: {esc(run.name)}</h1>'
        f'<p class="meta">{" · ".join(facts)}</p><p class="meta">{esc(run.path.resolve())}</p>'
        f'<div class="cards">{cards}</div></header>'
    )


def metrics_row(label: str, block: dict, css: str = "") -> str:
    cells = "".join(f"<td>{number(block.get(c), 2 if c == 'mr' else 4)}</td>" for c in COLUMNS)
    klass = f' class="{css}"' if css else ""
    return f"<tr{klass}><td>{esc(label)}</td>{cells}<td>{number(block.get('count'))}</td></tr>"


def metrics_section(run: RunFolder, baseline: RunFolder | None) -> str:
    if not run.splits:
        return '<section id="metrics"><h2>Metrics</h2><p class="note">no metrics</p></section>'
    head = "".join(f"<th>{h}</th>" for h in HEADINGS)
    out = ['<section id="metrics"><h2>Metrics</h2>']
    for split in run.splits:
        block = run.metrics[split]
        rows = [
            metrics_row(side, block[side]) for side in ("both", "head", "tail") if side in block
        ]
        if baseline is not None and split in baseline.splits:
            rows.append(metrics_row("zero-shot, both", baseline.metrics[split]["both"], "baseline"))
        out.append(
            f'<h3>{esc(split)}</h3><table class="metrics" id="metrics-{esc(split)}">'
            f"<thead><tr><th>side</th>{head}<th>queries</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
        per_relation = block.get("per_relation", {})
        if per_relation:
            opened = " open" if split == run.main_split() and len(per_relation) <= 25 else ""
            out.append(
                f"<details{opened}><summary>{esc(split)} per relation ({len(per_relation)} "
                f"relations)</summary>{relation_table(split, per_relation, baseline)}</details>"
            )
    out.append("</section>")
    return "".join(out)


def relation_table(split: str, per_relation: dict, baseline: RunFolder | None) -> str:
    other = {}
    if baseline is not None and split in baseline.splits:
        other = baseline.metrics[split].get("per_relation", {})
    extra = "<th>zero-shot MRR</th>" if other else ""
    rows = []
    for relation, m in sorted(per_relation.items(), key=lambda rm: -rm[1]["count"]):
        cells = "".join(f"<td>{number(m.get(c), 2 if c == 'mr' else 4)}</td>" for c in COLUMNS)
        if other:
            cells += f"<td>{number(other.get(relation, {}).get('mrr'))}</td>"
        rows.append(f"<tr><td>{esc(relation)}</td><td>{number(m['count'])}</td>{cells}</tr>")
    head = "".join(f"<th>{h}</th>" for h in HEADINGS)
    return (
        f'<table class="per-relation" id="relations-{esc(split)}"><thead><tr><th>relation</th>'
        f"<th>queries</th>{head}{extra}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def curves_section(run: RunFolder, cfg: dict) -> str:
    metric = cfg["validation"]["metric"]
    uri = plots.training_curves(run.trace, metric)
    missing = (
        "no training trace (a zero-shot run trains nothing)"
        if run.zero_shot
        else ("no training trace (trace.jsonl is missing or empty)")
    )
    note = ""
    if run.trace and not any("valid" in e for e in run.trace):
        note = '<p class="note">no validation during training (validation.every: 0)</p>'
    alt = f"training loss and validation {metric} per epoch"
    return f"<section><h2>Training curves</h2>{figure(uri, 'curves', alt, missing)}{note}</section>"


def relation_bars_section(run: RunFolder, baseline: RunFolder | None) -> str:
    split = run.main_split()
    uri = None
    if split is not None:
        other = None
        if baseline is not None and split in baseline.splits:
            other = baseline.metrics[split].get("per_relation")
        uri = plots.relation_bars(run.metrics[split].get("per_relation", {}), other)
    title = f"MRR per relation ({esc(split)})" if split else "MRR per relation"
    return (
        f"<section><h2>{title}</h2>"
        f"{figure(uri, 'relation-bars', 'MRR per relation', 'no per-relation metrics')}</section>"
    )


def coverage_section(kg: KnowledgeGraph | None, cfg: dict) -> str:
    if kg is None:
        return '<section><h2>Modality coverage</h2><p class="note">dataset not loaded</p></section>'
    if kg.manifest is None:
        coverage = {"both": 0, "text_only": 0, "image_only": 0, "neither": kg.num_entities}
    else:
        coverage = kg.manifest.coverage(kg.entities)
    rows = "".join(
        f"<tr><td>{esc(label)}</td><td>{coverage[key]:,}</td>"
        f"<td>{coverage[key] / max(kg.num_entities, 1):.1%}</td></tr>"
        for key, label in plots.COVERAGE_LABELS.items()
    )
    used = cfg["model"]["modalities"]
    uses = f"the model uses {', '.join(used)}" if used else "the model is structural only"
    return (
        '<section><h2>Modality coverage</h2><table class="coverage" id="coverage">'
        f"<thead><tr><th>entities with</th><th>count</th><th>share</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        f"{figure(plots.coverage_bars(coverage), 'coverage-bars', 'modality coverage', '')}"
        f'<p class="meta">{kg.num_entities:,} entities; {esc(uses)}</p></section>'
    )


def entity_block(view, extra: str = "", placeholder: bool = True) -> str:
    """An entity's thumbnail (a blank square when it has none, if ``placeholder``), name, id
    and text."""
    image = '<div class="nothumb"></div>' if placeholder else ""
    if view.image:
        image = f'<img class="thumb" alt="{esc(view.name)}" src="{view.image}">'
    label = f' <span class="label">{esc(view.label)}</span>' if view.label != view.name else ""
    text = f'<div class="text">{esc(view.text)}</div>' if view.text else ""
    return f"{image}<div><b>{esc(view.name)}</b>{label}{extra}{text}</div>"


def query_block(query: Query, kg: KnowledgeGraph, views: EntityViews) -> str:
    anchor, answer = views(query.anchor), views(query.answer)
    relation = kg.relations[query.relation]
    if query.side == "tail":
        title = f"({esc(anchor.name)}, {esc(relation)}, ?)"
    else:
        title = f"(?, {esc(relation)}, {esc(anchor.name)})"
    columns = []
    for scorer, answers in query.predictions.items():
        items = []
        for a in answers:
            entity = kg.entity_index[a["entity"]]
            badges = ""
            if a["answer"]:
                badges += '<span class="badge answer">✓ true answer</span>'
            elif a["known"]:
                badges += '<span class="badge known">known triple</span>'
            score = f' <span class="label">score {a["score"]:.3f}</span>'
            css = ' class="answer"' if a["answer"] else ""
            items.append(
                f'<li{css}><span class="rank">{a["rank"]}</span>'
                f"{entity_block(views(entity), score + badges, views.images)}</li>"
            )
        rank = query.answer_rank[scorer]
        columns.append(
            f'<div class="ranking" data-scorer="{esc(scorer)}"><h4>{esc(scorer)} '
            f'<span class="label">true answer at rank {rank:g}</span></h4>'
            f"<ol>{''.join(items)}</ol></div>"
        )
    return (
        f'<div class="query"><h3>{title} <span class="label">{esc(query.split)}</span></h3>'
        f'<div class="anchor">{entity_block(anchor, placeholder=views.images)}</div>'
        f'<p class="meta">true answer: <b>{esc(answer.name)}</b></p>'
        f'<div class="rankings">{"".join(columns)}</div></div>'
    )


def predictions_section(
    queries: list[Query], kg: KnowledgeGraph | None, notes: list[str], k: int
) -> str:
    body = "".join(f'<p class="note">{esc(n)}</p>' for n in notes)
    if kg is not None and queries and queries[0].predictions:
        views = EntityViews(kg)
        body += "".join(query_block(q, kg, views) for q in queries)
    elif not notes:
        body += '<p class="note">no sample queries (report.samples: 0)</p>'
    return f'<section id="predictions"><h2>Predictions: top {k} for sample queries</h2>{body}</section>'


def config_section(cfg: dict) -> str:
    changed = config_mod.documented(cfg, config_mod.changed_keys(cfg))
    return (
        '<section id="config"><h2>Configuration</h2>'
        "<p>Keys that differ from the defaults:</p>"
        f'<pre class="changed">{esc(changed)}</pre>'
        "<details><summary>every key (the run's config.yaml, documented)</summary>"
        f'<pre class="full">{esc(config_mod.documented(cfg))}</pre></details></section>'
    )


# --- assembly ------------------------------------------------------------------------------
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
    elif samples:
        scorers[own] = model_scores(model)
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
    body = "\n".join(
        [
            summary_section(run, cfg, kg),
            metrics_section(run, baseline),
            curves_section(run, cfg),
            relation_bars_section(run, baseline),
            coverage_section(kg, cfg),
            predictions_section(queries, kg, notes, k),
            config_section(cfg),
        ]
    )
    out = Path(out) if out is not None else run.path / "report.html"
    write_text(out, page(f"vlkge report: {run.name}", body))
    return out


def _load_scorer(run: RunFolder, encoder, notes: list[str]):
    """``(graph, scorer)`` of the run's own model; on failure a note, ``(None, None)``."""
    try:
        if run.zero_shot:
            from vlkge.evaluation.zero_shot import load_zero_shot

            _, kg, zero = load_zero_shot(run.path, encoder)
            return kg, zero.scorer()
        from vlkge.training.run import load_run

        _, kg, model = load_run(run.path)
        return kg, model_scores(model)
    except VlkgeError as exc:
        notes.append(f"no predictions: the run's model could not be loaded ({exc})")
        log.warning("report: %s", notes[-1])
        return None, None


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
