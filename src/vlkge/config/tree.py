"""The default tree and the dotted keys that name its leaves (``section.key``)."""

from __future__ import annotations

import copy
import difflib
import functools
from importlib import resources
from typing import Any

import yaml

from vlkge.config.schema import MAPPINGS


def default_text() -> str:
    """The documented default configuration, comments included."""
    return resources.files("vlkge").joinpath("configs/default.yaml").read_text(encoding="utf-8")


def defaults() -> dict:
    """A fresh copy of the defaults (parsed once: every validation and suggestion needs them)."""
    return copy.deepcopy(_parsed_defaults())


@functools.cache
def _parsed_defaults() -> dict:
    return yaml.safe_load(default_text())


def dotted_keys(cfg: dict, prefix: str = "") -> list[str]:
    """Every leaf key of ``cfg`` as ``section.key`` (free mappings count as leaves)."""
    out = []
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in MAPPINGS:
            out.extend(dotted_keys(value, f"{path}."))
        else:
            out.append(path)
    return out


def get_key(cfg: dict, dotted: str) -> Any:
    """The value of dotted key ``a.b.c`` in ``cfg``."""
    node: Any = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def put_key(cfg: dict, dotted: str, value: Any) -> None:
    """Replace the value of an existing dotted key (no check: :func:`set_key` checks)."""
    section, _, leaf = dotted.rpartition(".")
    (get_key(cfg, section) if section else cfg)[leaf] = value


def key_in(key: str, keys) -> bool:
    """Whether dotted ``key`` is one of ``keys``, where ``section.`` stands for every key of
    the section."""
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in keys)


def changed_keys(cfg: dict) -> set[str]:
    """Dotted keys of ``cfg`` whose value differs from the default (mappings as a whole)."""
    base = defaults()
    return {k for k in dotted_keys(cfg) if get_key(cfg, k) != get_key(base, k)}


def diff(a: dict, b: dict, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two configs."""
    out: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.update(diff(va, vb, f"{prefix}{key}."))
        elif va != vb:
            out[f"{prefix}{key}"] = (va, vb)
    return out


def suggest(path: str, siblings: list[str]) -> str | None:
    """The key a misspelt ``path`` most likely meant: a close one of its ``siblings`` (the
    keys of its section), else a key of another section with the same name (``training.dim``
    -> ``model.dim``), else the closest dotted key."""
    prefix, _, leaf = path.rpartition(".")
    close = difflib.get_close_matches(leaf, siblings, n=1)
    if close:
        return f"{prefix}.{close[0]}" if prefix else close[0]
    every = dotted_keys(defaults())
    same = [k for k in every if k.rsplit(".", 1)[-1] == leaf]
    close = same or difflib.get_close_matches(path, every, n=1, cutoff=0.75)
    return close[0] if close else None
