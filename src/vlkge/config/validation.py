"""Strict validation of a merged config: types, allowed values, bounds, combinations.

Every rule comes from one table of :mod:`vlkge.config.schema`; the allowed values of the keys a
registry backs come from the registry (:mod:`vlkge.config.choices`).
"""

from __future__ import annotations

import math
from typing import Any

from vlkge.config.choices import allowed, allowed_given
from vlkge.config.schema import (
    AT_MOST,
    BELOW_ONE,
    EMPTY_SUBSETS_OK,
    ITEMS,
    MAPPINGS,
    NON_NEGATIVE,
    NULLABLE_TYPES,
    POSITIVE,
    SUBSETS,
    UNIT_INTERVAL,
)
from vlkge.config.tree import defaults
from vlkge.errors import ConfigError, echo


def validate(cfg: dict) -> dict:
    """Check types, choices and ranges against the defaults; returns ``cfg`` (floats coerced)."""
    _check_section(cfg, defaults(), "", allowed())
    _check_combinations(cfg)
    return cfg


def _check_section(cfg: dict, reference: dict, prefix: str, choices: dict[str, tuple]) -> None:
    for key, default in reference.items():
        path = f"{prefix}{key}"
        if path in MAPPINGS:
            cfg[key] = _check_mapping(cfg[key], path)
        elif isinstance(default, dict):
            _check_section(cfg[key], default, f"{path}.", choices)
        elif path in choices:
            cfg[key] = _check_choice(cfg[key], path, choices[path])
        else:
            cfg[key] = _check(cfg[key], default, path)


def _check_mapping(value: Any, path: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{path} must be a mapping (relation: value), not {echo(value)}")
    out = {}
    for key, entry in value.items():
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"{path}: keys must be relation names, not {echo(key)}")
        entry = _check_value(entry, MAPPINGS[path], path, f"{path}.{echo(key, quote=False)}")
        if path in UNIT_INTERVAL and not 0.0 <= entry <= 1.0:
            raise ConfigError(
                f"{path}.{echo(key, quote=False)} must be a fraction in [0, 1], not {echo(entry)}"
            )
        out[key] = entry
    return out


def _as_float(value: Any) -> Any:
    """Ints and numeric strings as floats (YAML reads 1e-3, without a dot, as a string; an
    int beyond the float range is infinite); anything else unchanged, for the type check to
    reject."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _is_choice(value: Any, choices: tuple) -> bool:
    """``value`` is one of ``choices`` as written: 1 is not ``true``, 0.0 is not ``false``."""
    return any(value == c and type(value) is type(c) for c in choices)


def _check_choice(value: Any, path: str, choices: tuple) -> Any:
    if not _is_choice(value, choices):
        allowed = ", ".join("null" if c is None else str(c) for c in choices)
        raise ConfigError(f"{path} must be one of {allowed}, not {echo(value)}")
    return value


def _check(value: Any, default: Any, path: str) -> Any:
    if path in SUBSETS:
        empty_ok = path in EMPTY_SUBSETS_OK
        kind = "a list" if empty_ok else "a non-empty list"
        allowed = list(SUBSETS[path])
        if not isinstance(value, list) or not (value or empty_ok):
            raise ConfigError(f"{path} must be {kind} drawn from {allowed}, not {echo(value)}")
        for item in value:
            if not _is_choice(item, SUBSETS[path]):
                raise ConfigError(
                    f"{path} must be {kind} drawn from {allowed}; {echo(item)} is not one of them"
                )
        return value
    if path in ITEMS:
        if not isinstance(value, list):
            raise ConfigError(f"{path} must be list, not {type(value).__name__} {echo(value)}")
        return [
            _check_value(item, ITEMS[path], path, f"{path}[{i}]") for i, item in enumerate(value)
        ]
    expected = NULLABLE_TYPES.get(path) if default is None else type(default)
    if value is None:
        if default is None:
            return None
        raise ConfigError(f"{path} must not be null")
    return _check_value(value, expected, path, path)


def _check_value(value: Any, expected: type, path: str, label: str) -> Any:
    """One scalar of key ``path`` (a list item or mapping entry of it, named ``label`` in
    errors): its type, then the key's bounds; returns it (ints as floats for float keys)."""
    if expected is float:
        value = _as_float(value)
    if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
        raise ConfigError(
            f"{label} must be {expected.__name__}, not {type(value).__name__} {echo(value)}"
        )
    if expected is str:
        if not value.strip():
            raise ConfigError(f"{label} must not be empty")
        if "\x00" in value:
            raise ConfigError(f"{label} must not contain a NUL character: {echo(value)}")
        return value
    if expected is float and not math.isfinite(value):
        raise ConfigError(f"{label} must be a finite number, not {echo(value)}")
    if path in POSITIVE and value <= 0:
        raise ConfigError(f"{label} must be positive, not {echo(value)}")
    if path in NON_NEGATIVE and value < 0:
        raise ConfigError(f"{label} must not be negative, not {echo(value)}")
    if path in BELOW_ONE and value >= 1:
        raise ConfigError(f"{label} must be below 1, not {echo(value)}")
    if path in AT_MOST and value > AT_MOST[path]:
        raise ConfigError(f"{label} must be at most {AT_MOST[path]}, not {echo(value)}")
    return value


def _check_combinations(cfg: dict) -> None:
    regime, loss = cfg["training"]["regime"], cfg["training"]["loss"]
    if loss not in allowed_given("training.loss", regime):
        regimes = [
            r for r in allowed()["training.regime"] if loss in allowed_given("training.loss", r)
        ]
        raise ConfigError(f"training.loss {loss} needs regime {' or '.join(regimes)}")
    model = cfg["model"]
    if not model["modalities"] and not model["structural"]:
        raise ConfigError("model.structural: false needs at least one of model.modalities")
    if len(set(model["modalities"])) != len(model["modalities"]):
        raise ConfigError(f"model.modalities lists a modality twice: {model['modalities']}")
    zero_shot = cfg["zero_shot"]
    prompts = {"zero_shot.default_template": zero_shot["default_template"]}
    for key in ("templates", "head_templates"):
        prompts.update(
            {f"zero_shot.{key}.{echo(r, quote=False)}": t for r, t in zero_shot[key].items()}
        )
    for key, template in prompts.items():
        if "{}" not in template:
            raise ConfigError(f"{key} needs a {{}} for the candidate's name: {echo(template)}")
    anchors = zero_shot["anchor_modalities"]
    if len(set(anchors)) != len(anchors):
        raise ConfigError(f"zero_shot.anchor_modalities lists a modality twice: {anchors}")
