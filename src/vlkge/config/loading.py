"""A config from the defaults, a user's YAML file and ``--set key=value`` overrides.

``load_config`` resolves a config once: the defaults, then the user's file, then the overrides
(values parsed as YAML), validated (:mod:`vlkge.config.validation`), then ``compat.paper``
expanded into the keys it stands for (:mod:`vlkge.config.compat`). Unknown keys are rejected
with a suggestion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vlkge.config.compat import expand_paper
from vlkge.config.schema import MAPPINGS
from vlkge.config.tree import defaults, get_key, suggest
from vlkge.config.validation import validate
from vlkge.errors import ConfigError, echo


def load_config(path: str | Path | None = None, overrides: list[str] | tuple = ()) -> dict:
    """Defaults, then the user's file, then ``key=value`` overrides; validated, then
    ``compat.paper`` expanded."""
    cfg = defaults()
    if path is not None:
        _merge(cfg, load_yaml(path), source=str(path))
    for text in overrides:
        key, value = parse_override(text)
        set_key(cfg, key, value)
    return expand_paper(validate(cfg))


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8") from None
    except ValueError as exc:  # a value YAML cannot build: a date out of range, a huge int
        raise ConfigError(f"{path}: invalid value ({echo(exc, quote=False)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: a config must be a mapping of sections, not {type(data).__name__}"
        )
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``a.b=value`` -> (``a.b``, YAML-parsed value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got {echo(text)}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, ValueError):  # ValueError: a date out of range, a huge int
        value = raw
    return key.strip(), value


def set_key(cfg: dict, dotted: str, value: Any, source: str = "--set") -> None:
    """Set ``a.b.c`` in ``cfg`` (rejecting unknown keys); ``mapping.entry`` sets one entry of a
    free mapping (:data:`~vlkge.config.schema.MAPPINGS`), keeping its other entries."""
    for mapping in MAPPINGS:
        if dotted.startswith(f"{mapping}.") and len(dotted) > len(mapping) + 1:
            value = {**get_key(cfg, mapping), dotted[len(mapping) + 1 :]: value}
            dotted = mapping
            break
    update: dict = {}
    node = update
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    _merge(cfg, update, source=source)


def _merge(base: dict, update: dict, prefix: str = "", source: str = "config") -> None:
    for key, value in update.items():
        path = f"{prefix}{key}"
        if key not in base:
            close = suggest(path, [str(k) for k in base])
            hint = f"; did you mean {close}?" if close else ""
            raise ConfigError(f"{source}: unknown key {echo(path)}{hint}")
        if path in MAPPINGS:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {path} must be a mapping (relation: value)")
            base[key] = dict(value)
        elif isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {path} must be a mapping")
            _merge(base[key], value, f"{path}.", source)
        else:
            base[key] = value
