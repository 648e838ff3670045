"""The figures of a search's report, drawn like the run report's (:mod:`vlkge.reports.plots`):
optimisation history, validation per epoch of every trial, parameter importances and parallel
coordinates, pruned trials marked in each. Each returns a ``data:`` URI, or None without data.
"""

from __future__ import annotations

import math

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from optuna.trial import FrozenTrial, TrialState

from vlkge.reports.plots import BASELINE_COLOUR, MODEL_COLOUR, data_uri
from vlkge.tuning.results import short_names, shown_value
from vlkge.tuning.space import Parameter

PRUNED_COLOUR = "#999999"


def history(trials: list[FrozenTrial], label: str) -> str | None:
    """Each finished trial's validation metric by trial number, and the best so far."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.value is not None]
    if not complete and not pruned:
        return None
    figure = Figure(figsize=(7, 3.2))
    ax = figure.subplots()
    ax.scatter(
        [t.number for t in complete],
        [t.value for t in complete],
        color=MODEL_COLOUR,
        label="complete",
    )
    ax.scatter(
        [t.number for t in pruned],
        [t.value for t in pruned],
        color=PRUNED_COLOUR,
        marker="x",
        label="pruned (last validation)",
    )
    best, steps = -math.inf, []
    for t in sorted(complete, key=lambda t: t.number):
        best = max(best, t.value)
        steps.append((t.number, best))
    if steps:
        ax.step(*zip(*steps, strict=True), where="post", color=BASELINE_COLOUR, label="best so far")
    ax.set(title="optimisation history", xlabel="trial", ylabel=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    figure.tight_layout()
    return data_uri(figure)


def epochs(trials: list[FrozenTrial], best: int | None, label: str) -> str | None:
    """Validation per epoch of every trial: where the pruner stopped the pruned ones."""
    drawn = [t for t in trials if t.intermediate_values]
    if not drawn:
        return None
    figure = Figure(figsize=(7, 3.2))
    ax = figure.subplots()
    for t in drawn:
        steps = sorted(t.intermediate_values.items())
        pruned = t.state == TrialState.PRUNED
        colour = BASELINE_COLOUR if t.number == best else PRUNED_COLOUR if pruned else MODEL_COLOUR
        ax.plot(
            *zip(*steps, strict=True),
            color=colour,
            alpha=1.0 if t.number == best else 0.55,
            linestyle="--" if pruned else "-",
            marker="x" if pruned else None,
            markevery=[-1] if pruned else None,
        )
    ax.set(title="validation per epoch (dashed: pruned)", xlabel="epoch", ylabel=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return data_uri(figure)


def importances(values: dict[str, float]) -> str | None:
    if not values:
        return None
    names = short_names(list(values))
    keys = sorted(values, key=values.get)
    figure = Figure(figsize=(7, 1.6 + 0.4 * len(keys)))
    ax = figure.subplots()
    ax.barh([names[k] for k in keys], [values[k] for k in keys], color=MODEL_COLOUR)
    ax.set(title="parameter importance (PED-ANOVA)", xlabel="share of the variation explained")
    ax.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    return data_uri(figure)


def _position(p: Parameter, value) -> float:
    """``value`` of ``p`` on its axis, from 0 (low, first choice) to 1."""
    if p.kind == "choice":
        return p.values.index(value) / max(len(p.values) - 1, 1)
    if p.log:
        return (math.log(value) - math.log(p.low)) / (math.log(p.high) - math.log(p.low))
    return (value - p.low) / (p.high - p.low)


def parallel(
    trials: list[FrozenTrial], parameters: tuple[Parameter, ...], label: str
) -> str | None:
    """One line per finished trial across an axis per parameter and one for the validation
    metric, coloured by it; pruned trials dashed grey."""
    drawn = [
        t
        for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        and t.value is not None
        and all(p.key in t.params for p in parameters)
    ]
    if not drawn:
        return None
    low, high = min(t.value for t in drawn), max(t.value for t in drawn)
    span = (high - low) or 1.0
    figure = Figure(figsize=(max(6, 1.6 * (len(parameters) + 1)), 3.6))
    ax = figure.subplots()
    cmap = colormaps["viridis"]
    for t in sorted(drawn, key=lambda t: (t.state == TrialState.COMPLETE, t.value)):
        ys = [_position(p, t.params[p.key]) for p in parameters] + [(t.value - low) / span]
        pruned = t.state == TrialState.PRUNED
        ax.plot(
            range(len(ys)),
            ys,
            color=PRUNED_COLOUR if pruned else cmap((t.value - low) / span),
            linestyle="--" if pruned else "-",
            alpha=0.6 if pruned else 0.9,
        )
    names = short_names([p.key for p in parameters])
    ax.set_xticks(range(len(parameters) + 1), [names[p.key] for p in parameters] + [label])
    for i, p in enumerate(parameters):
        ends = (p.values[0], p.values[-1]) if p.kind == "choice" else (p.low, p.high)
        ax.annotate(shown_value(ends[0]), (i, 0), xytext=(3, -10), textcoords="offset points")
        ax.annotate(shown_value(ends[1]), (i, 1), xytext=(3, 4), textcoords="offset points")
    ax.annotate(f"{low:.4f}", (len(parameters), 0), xytext=(3, -10), textcoords="offset points")
    ax.annotate(f"{high:.4f}", (len(parameters), 1), xytext=(3, 4), textcoords="offset points")
    ax.set_yticks([])
    ax.set_ylim(-0.12, 1.12)
    for i in range(len(parameters) + 1):
        ax.axvline(i, color="#cccccc", linewidth=1)
    ax.set_title("parallel coordinates (colour: validation; dashed: pruned)")
    figure.tight_layout()
    return data_uri(figure)
