"""``vlkge compare``: several runs in one table, with the config keys in which they differ.

The same table is printed for the terminal and written as a self-contained HTML page
(``templates/compare.html.j2``); its metric columns are the shared :data:`METRIC_COLUMNS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlkge import config as config_mod
from vlkge.errors import VlkgeError
from vlkge.reports.runs import RunFolder, read_run
from vlkge.reports.tables import METRIC_COLUMNS, aligned
from vlkge.reports.templating import render

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
        row += [column.cell(both) for column in METRIC_COLUMNS]
        row.append(str(run.metrics.get("best_epoch", "–")))
        seconds = run.metrics.get("train_time_s")
        row.append(f"{seconds:.1f}" if isinstance(seconds, float) else "–")
        rows.append(row)
    return rows


def _header(comparison: Comparison) -> list[str]:
    return [
        *comparison.labels,
        *comparison.keys,
        *(column.label for column in METRIC_COLUMNS),
        "epoch",
        "train_s",
    ]


def format_table(comparison: Comparison) -> str:
    """The comparison as aligned plain text (text columns left, numbers right)."""
    title = f"{comparison.split} metrics (both sides)"
    if not comparison.keys:
        title += "; the configs are identical"
    rows = [_header(comparison), *_rows(comparison)]
    return "\n".join([title, *aligned(rows, len(comparison.labels) + len(comparison.keys))])


def render_html(comparison: Comparison) -> str:
    """The comparison as a self-contained HTML page; the best value of each metric in bold."""
    blocks = [run.metrics[comparison.split]["both"] for run in comparison.runs]
    first_metric = len(comparison.labels) + len(comparison.keys)
    best = {
        first_metric + offset: column.best(blocks) for offset, column in enumerate(METRIC_COLUMNS)
    }
    return render(
        "compare.html.j2",
        title="vlkge compare",
        comparison=comparison,
        header=_header(comparison),
        rows=_rows(comparison),
        best=best,
    )
