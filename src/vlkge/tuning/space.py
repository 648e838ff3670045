"""The search space of ``vlkge tune``: config keys and the values each may take, with the
settings of the search (sampler, pruner), checked in one line per mistake like a config.

``space.yaml`` beside this module documents the format and holds every setting's default
(``vlkge config show --space`` prints it); docs/tuning.md explains the search.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import math
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import optuna
import yaml

from vlkge import config as config_mod
from vlkge.errors import ConfigError, echo

SETTING_CHOICES: dict[str, tuple] = {
    "sampler": ("tpe", "random", "grid"),
    "pruner": ("none", "median", "hyperband", "halving"),
}
SETTING_MINIMUM = {
    "seed": 0,
    "startup_trials": 0,
    "warmup_epochs": 0,
    "min_epochs": 1,
    "reduction_factor": 2,
}
SPEC_KEYS = ("choices", "low", "high", "step", "log")
#: keys that define what a search selects on or where its trials run: never searched
NOT_SEARCHED = (
    "validation.split",
    "validation.metric",
    "evaluation.",
    "device",
    "num_threads",
    "training.progress",
    "tracking.",
    "report.",
)
MAX_GRID = 100_000


def space_text() -> str:
    """The documented search-space format with every setting's default."""
    return resources.files("vlkge").joinpath("tuning/space.yaml").read_text(encoding="utf-8")


@functools.cache
def _defaults() -> dict:
    return yaml.safe_load(space_text())


@dataclass(frozen=True)
class Parameter:
    """One searched config key: a choice among ``choices``, or an int or float range."""

    key: str
    kind: str  # "choice" | "int" | "float"
    choices: tuple = ()
    low: int | float = 0
    high: int | float = 0
    step: int | float | None = None
    log: bool = False

    @property
    def values(self) -> tuple:
        """The choices as Optuna stores them: lists and mappings as inline YAML text."""
        return tuple(_stored(v) for v in self.choices)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.kind == "choice":
            return optuna.distributions.CategoricalDistribution(self.values)
        if self.kind == "int":
            step = 1 if self.step is None else self.step
            return optuna.distributions.IntDistribution(
                self.low, self.high, log=self.log, step=step
            )
        return optuna.distributions.FloatDistribution(
            self.low, self.high, log=self.log, step=self.step
        )

    def draw(self, trial: optuna.Trial) -> Any:
        """This key's value for ``trial`` (a value fixed in the trial is kept)."""
        if self.kind == "choice":
            return self.config_value(trial.suggest_categorical(self.key, self.values))
        if self.kind == "int":
            step = 1 if self.step is None else self.step
            return trial.suggest_int(self.key, self.low, self.high, step=step, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def config_value(self, stored: Any) -> Any:
        """The config value of a value Optuna stored for this key."""
        if self.kind != "choice":
            return stored
        return dict(zip(self.values, self.choices, strict=True))[stored]

    def grid(self) -> list:
        """Every value of a grid search, as Optuna stores them."""
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "int":
            return list(range(self.low, self.high + 1, 1 if self.step is None else self.step))
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [round(self.low + i * self.step, 12) for i in range(count)]

    def spec(self) -> dict:
        """This parameter as the space file writes it (normalised)."""
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        out: dict = {"low": self.low, "high": self.high}
        if self.step is not None:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        return out


def _stored(value: Any) -> Any:
    return config_mod.inline(value) if isinstance(value, (list, dict)) else value


@dataclass(frozen=True)
class SearchSpace:
    """The searched parameters and the settings of the search (``space.yaml``)."""

    parameters: tuple[Parameter, ...]
    settings: dict

    def as_dict(self) -> dict:
        return {**self.settings, "parameters": {p.key: p.spec() for p in self.parameters}}

    def draw(self, trial: optuna.Trial) -> dict[str, Any]:
        """The config values of every parameter for ``trial``."""
        return {p.key: p.draw(trial) for p in self.parameters}

    def config_values(self, params: dict[str, Any]) -> dict[str, Any]:
        """Config values of the parameters Optuna stored for a trial."""
        return {p.key: p.config_value(params[p.key]) for p in self.parameters if p.key in params}

    def grid_points(self, seed: int) -> list[dict[str, Any]]:
        """Every combination of the parameters' grid values, in an order drawn with ``seed``
        (a search cut short still spreads over the grid)."""
        keys = [p.key for p in self.parameters]
        points = [dict(zip(keys, combo, strict=True)) for combo in self._combinations()]
        random.Random(seed).shuffle(points)
        return points

    def grid_size(self) -> int:
        return math.prod(len(p.grid()) for p in self.parameters)

    def _combinations(self):
        return itertools.product(*(p.grid() for p in self.parameters))


def load_space(path: str | Path) -> SearchSpace:
    """The search space in YAML file ``path``; every mistake is a one-line ``ConfigError``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: search space file not found")
    return parse_space(config_mod.load_yaml(path), str(path))


def parse_space(data: dict, source: str) -> SearchSpace:
    defaults = _defaults()
    settings = {k: v for k, v in defaults.items() if k != "parameters"}
    for key, value in data.items():
        if key == "parameters":
            continue
        if key not in defaults:
            close = difflib.get_close_matches(str(key), list(defaults), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            if not close and "." in str(key):
                hint = "; config keys go under parameters:"
            raise ConfigError(f"{source}: unknown setting {echo(key)}{hint}")
        settings[key] = _setting(key, value, source)
    parameters = data.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise ConfigError(
            f"{source}: parameters must name at least one config key to search, e.g. "
            "parameters: {training.optimizer.lr: {low: 0.01, high: 0.5, log: true}}"
        )
    space = SearchSpace(
        tuple(_parameter(str(k), spec, source) for k, spec in parameters.items()), settings
    )
    if settings["sampler"] == "grid":
        _check_grid(space, source)
    return space


def _setting(key: str, value: Any, source: str) -> Any:
    if key in SETTING_CHOICES:
        if not isinstance(value, str) or value not in SETTING_CHOICES[key]:
            allowed = ", ".join(SETTING_CHOICES[key])
            raise ConfigError(f"{source}: {key} must be one of {allowed}, not {echo(value)}")
        return value
    if value is None and key == "seed":
        return None
    if type(value) is not int:
        raise ConfigError(f"{source}: {key} must be int, not {type(value).__name__} {echo(value)}")
    if value < SETTING_MINIMUM[key]:
        raise ConfigError(f"{source}: {key} must be at least {SETTING_MINIMUM[key]}, not {value}")
    return value


def _is_section(key: str) -> bool:
    leaves = config_mod.dotted_keys(config_mod.defaults())
    return key not in leaves and any(leaf.startswith(f"{key}.") for leaf in leaves)


def _parameter(key: str, spec: Any, source: str) -> Parameter:
    where = f"{source}: {key}"
    if _is_section(key):
        raise ConfigError(
            f"{where} is a config section; name its keys with dots, e.g. "
            "training.optimizer.lr: {low: 0.01, high: 0.5}"
        )
    if config_mod.key_in(key, NOT_SEARCHED):
        raise ConfigError(
            f"{where} cannot be searched: it decides what trials are selected on or where they "
            "run; set it in the base config"
        )
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise ConfigError(
            f"{where} must be {{choices: [...]}} or {{low: L, high: H}}, not {echo(spec)} "
            "(a fixed value belongs in the base config)"
        )
    for name in spec:
        if name not in SPEC_KEYS:
            close = difflib.get_close_matches(str(name), SPEC_KEYS, n=1)
            hint = f"; did you mean {close[0]}?" if close else f" ({', '.join(SPEC_KEYS)})"
            raise ConfigError(f"{where}: unknown field {echo(name)}{hint}")
    if "choices" in spec:
        return _choice(key, spec, source)
    return _range(key, spec, source)


def _checked(key: str, value: Any, what: str, source: str) -> Any:
    """``value`` checked as config ``key``'s (a key the config does not know is an error)."""
    try:
        return config_mod.check_key(key, value, source)
    except ConfigError as exc:
        if str(exc).startswith(f"{source}: "):  # an unknown key, named with a suggestion
            raise
        raise ConfigError(f"{source}: {key} {what}: {exc}") from None


def _choice(key: str, spec: dict, source: str) -> Parameter:
    where = f"{source}: {key}"
    other = next((name for name in spec if name != "choices"), None)
    if other is not None:
        raise ConfigError(f"{where}: choices and {other} exclude each other")
    values = spec["choices"]
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: empty choices (a non-empty list of values)")
    checked = [_checked(key, v, f"choice {echo(v)}", source) for v in values]
    stored = [_stored(v) for v in checked]
    for i, value in enumerate(stored):
        if value in stored[:i]:
            raise ConfigError(f"{where}: choice {echo(checked[i])} is listed twice")
    return Parameter(key, "choice", tuple(checked))


def _range(key: str, spec: dict, source: str) -> Parameter:
    where = f"{source}: {key}"
    missing = [name for name in ("low", "high") if name not in spec]
    if missing:
        raise ConfigError(f"{where} needs choices, or low and high (no {missing[0]})")
    low = _checked(key, spec["low"], "low", source)
    high = _checked(key, spec["high"], "high", source)
    kinds = {type(low), type(high)}
    if kinds not in ({int}, {float}):
        raise ConfigError(
            f"{where}: a range needs a key that takes numbers; {key} takes "
            f"{type(low).__name__} values: use choices"
        )
    kind = "int" if kinds == {int} else "float"
    if low > high:
        raise ConfigError(f"{where}: low {low} is above high {high}")
    if low == high:
        raise ConfigError(
            f"{where}: empty range (low = high = {low}); a fixed value belongs in the base config"
        )
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, not {echo(log)}")
    step = spec.get("step")
    if step is not None:
        step_type = int if kind == "int" else (int, float)
        if isinstance(step, bool) or not isinstance(step, step_type) or not step > 0:
            raise ConfigError(f"{where}: step must be a positive {kind}, not {echo(step)}")
        if log:
            raise ConfigError(f"{where}: step and log exclude each other")
        step = float(step) if kind == "float" else step
    if log and low <= 0:
        raise ConfigError(f"{where}: a log scale needs low above 0, not {low}")
    return Parameter(key, kind, low=low, high=high, step=step, log=log)


def _check_grid(space: SearchSpace, source: str) -> None:
    for p in space.parameters:
        if p.kind == "float" and p.step is None:
            raise ConfigError(
                f"{source}: {p.key}: sampler grid needs choices, int ranges or float ranges with "
                "a step"
            )
    if space.grid_size() > MAX_GRID:
        raise ConfigError(
            f"{source}: the grid has {space.grid_size():,} points (at most {MAX_GRID:,}); "
            "use sampler tpe or random"
        )
