"""``vlkge compare``: several runs in one table, with the config keys in which they differ.

The same table is printed for the terminal and written as a self-contained HTML page.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlkge import config as config_mod
from vlkge.errors import VlkgeError
from vlkge.reports.html import esc, number, page
from vlkge.reports.runs import RunFolder, read_run

METRICS = ("mrr", "hits@1", "hits@3", "hits@10", "mr")
HEADINGS = {"mrr": "MRR", "hits@1": "H@1", "hits@3": "H@3", "hits@10": "H@10", "mr": "MR"}
WIDEST_VALUE = 40  # characters of a config value shown in a cell


@dataclass
class Comparison:
    split: str
    keys: list[str]  # dotted config keys whose values differ between the runs
    names: list[str]
    runs: list[RunFolder]

    @property
    def labels(self) -> list[str]:
        """The text columns before the config keys: run, kind, and the encoder that made the
        features when any run has one."""
        return ["run", "kind"] + (["encoder"] if any(r.encoder for r in self.runs) else [])

    def value(self, run: RunFolder, key: str) -> str:
        text = _at(run.cfg, key)
        return text if len(text) <= WIDEST_VALUE else text[: WIDEST_VALUE - 1] + "…"


def compare_runs(folders: list[str | Path], split: str | None = None) -> Comparison:
    """Read ``folders`` (finished runs) and find the config keys in which they differ;
    ``split`` (default test, else the last split every run evaluated) picks the metrics."""
    if not folders:
        raise VlkgeError("compare needs at least one run folder")
    runs = [read_run(f) for f in folders]
    common = [s for s in runs[0].splits if all(s in r.splits for r in runs)]
    if split is None:
        if not common:
            raise VlkgeError("the runs have no evaluated split in common")
        split = "test" if "test" in common else common[-1]
    for run in runs:
        if split not in run.splits:
            raise VlkgeError(
                f"{run.path}: no {split} metrics (it evaluated {run.splits or 'none'})"
            )
    keys = sorted({k for r in runs for k in config_mod.dotted_keys(r.cfg)})
    differ = [k for k in keys if len({_at(r.cfg, k) for r in runs}) > 1]
    names = [r.name for r in runs]
    if len(set(names)) < len(names):  # two folders with the same name: show their paths
        names = [str(r.path) for r in runs]
    return Comparison(split, differ, names, runs)


def _at(cfg: dict, key: str) -> str:
    node = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return config_mod.inline(node)


def _rows(comparison: Comparison) -> list[list[str]]:
    rows = []
    for name, run in zip(comparison.names, comparison.runs, strict=True):
        both = run.metrics[comparison.split]["both"]
        row = [name, "zero-shot" if run.zero_shot else "trained"]
        if "encoder" in comparison.labels:
            row.append(run.encoder or "–")
        row += [comparison.value(run, k) for k in comparison.keys]
        row += [number(both.get(m), 2 if m == "mr" else 4) for m in METRICS]
        row.append(str(run.metrics.get("best_epoch", "–")))
        seconds = run.metrics.get("train_time_s")
        row.append(f"{seconds:.1f}" if isinstance(seconds, float) else "–")
        rows.append(row)
    return rows


def _header(comparison: Comparison) -> list[str]:
    return [
        *comparison.labels,
        *comparison.keys,
        *(HEADINGS[m] for m in METRICS),
        "epoch",
        "train_s",
    ]


def format_table(comparison: Comparison) -> str:
    """The comparison as aligned plain text (text columns left, numbers right)."""
    header, rows = _header(comparison), _rows(comparison)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    text_columns = len(comparison.labels) + len(comparison.keys)

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < text_columns else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    title = f"{comparison.split} metrics (both sides)"
    if not comparison.keys:
        title += "; the configs are identical"
    return "\n".join([title, line(header), *(line(r) for r in rows)])


def render_html(comparison: Comparison) -> str:
    """The comparison as a self-contained HTML page; the best value of each metric in bold."""
    header, rows = _header(comparison), _rows(comparison)
    first_metric = len(comparison.labels) + len(comparison.keys)
    best = {}
    for offset, metric in enumerate(METRICS):
        values = [r.metrics[comparison.split]["both"].get(metric) for r in comparison.runs]
        values = [v for v in values if isinstance(v, float)]
        if values:
            best[first_metric + offset] = number(
                min(values) if metric == "mr" else max(values), 2 if metric == "mr" else 4
            )
    body_rows = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            content = f"<b>{esc(cell)}</b>" if best.get(i) == cell else esc(cell)
            cells.append(f"<td>{content}</td>")
        body_rows.append(f"<tr>{''.join(cells)}</tr>")
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    note = (
        "config keys in which the runs differ are shown as columns"
        if comparison.keys
        else "the runs' configs are identical"
    )
    body = (
        f"<h1>Comparison of {len(rows)} runs</h1>"
        f'<p class="meta">{esc(comparison.split)} metrics, both sides; {note}</p>'
        f'<table class="metrics" id="comparison"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body_rows)}</tbody></table>"
    )
    return page("vlkge compare", body)
