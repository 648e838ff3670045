"""Report figures drawn with matplotlib, returned as ``data:`` URIs of PNG images so the page
needs no other file.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot): no global state, no
display backend, safe on a headless machine and inside a user's own matplotlib session.
"""

from __future__ import annotations

import base64
import io
import math

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

MODEL_COLOUR = "#3566a8"
BASELINE_COLOUR = "#d08a2e"
MAX_RELATIONS = 40  # bars drawn; a table lists every relation


def data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96)  # tight_layout already fitted the labels
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def training_curves(trace: list[dict], metric: str = "mrr") -> str | None:
    """Loss per epoch and, when the run validated, the validation ``metric`` per epoch with
    the selected (best) epoch marked; ``None`` without a trace."""
    if not trace:
        return None
    validated = [e for e in trace if isinstance(e.get("valid"), dict) and metric in e["valid"]]
    figure = Figure(figsize=(9 if validated else 4.8, 3.2))
    axes = figure.subplots(1, 2 if validated else 1, squeeze=False)[0]
    epochs = [e["epoch"] for e in trace]
    axes[0].plot(epochs, [e["loss"] for e in trace], color=MODEL_COLOUR, marker=".")
    axes[0].set(title="training loss", xlabel="epoch", ylabel="loss")
    if validated:
        x = [e["epoch"] for e in validated]
        y = [e["valid"][metric] for e in validated]
        axes[1].plot(x, y, color=MODEL_COLOUR, marker=".")
        best = max(range(len(y)), key=y.__getitem__)
        axes[1].scatter([x[best]], [y[best]], color=BASELINE_COLOUR, zorder=3, label="selected")
        axes[1].set(title=f"validation {metric.upper()}", xlabel="epoch", ylabel=metric)
        axes[1].legend(loc="lower right")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    return data_uri(figure)


def relation_bars(
    per_relation: dict[str, dict],
    baseline: dict[str, dict] | None = None,
    labels: tuple[str, str] = ("model", "zero-shot"),
) -> str | None:
    """Horizontal MRR bars per relation (the paper's Figure 4), the baseline's beside each;
    the :data:`MAX_RELATIONS` relations with most evaluated queries when there are more."""
    rows = [(r, m) for r, m in per_relation.items() if not math.isnan(m.get("mrr", math.nan))]
    if not rows:
        return None
    rows = sorted(rows, key=lambda rm: -rm[1]["count"])[:MAX_RELATIONS]
    rows.sort(key=lambda rm: rm[1]["mrr"])
    names = [r for r, _ in rows]
    figure = Figure(figsize=(7.5, 0.9 + 0.32 * len(rows) * (2 if baseline else 1)))
    ax = figure.subplots()
    height = 0.4 if baseline else 0.7
    positions = range(len(rows))
    shift = height / 2 if baseline else 0.0
    ax.barh(
        [p + shift for p in positions],
        [m["mrr"] for _, m in rows],
        height=height,
        color=MODEL_COLOUR,
        label=labels[0],
    )
    if baseline:
        values = [baseline.get(r, {}).get("mrr", 0.0) for r in names]
        ax.barh(
            [p - shift for p in positions],
            [0.0 if math.isnan(v) else v for v in values],
            height=height,
            color=BASELINE_COLOUR,
            label=labels[1],
        )
        ax.legend(loc="lower right")
    ax.set_yticks(list(positions), [n if len(n) <= 32 else n[:31] + "…" for n in names])
    ax.set(xlim=(0, 1), xlabel="MRR", title="MRR per relation")
    ax.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return data_uri(figure)


COVERAGE_LABELS = {
    "both": "image + text",
    "image_only": "image only",
    "text_only": "text only",
    "neither": "neither",
}
COVERAGE_COLOURS = ("#3a8f5c", "#3566a8", "#7aa6d6", "#bbbbbb")


def coverage_bars(coverage: dict[str, int]) -> str:
    """How many entities have image and text, one of them, or neither."""
    figure = Figure(figsize=(6.5, 2.0))
    ax = figure.subplots()
    keys = list(COVERAGE_LABELS)
    counts = [coverage.get(k, 0) for k in keys]
    bars = ax.barh([COVERAGE_LABELS[k] for k in keys], counts, color=COVERAGE_COLOURS)
    ax.bar_label(bars, [f"{c:,}" for c in counts], padding=3)
    ax.invert_yaxis()
    ax.set(xlabel="entities", title="modality coverage")
    ax.set_xlim(0, max(max(counts), 1) * 1.15)
    figure.tight_layout()
    return data_uri(figure)
