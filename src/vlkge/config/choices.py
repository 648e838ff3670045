"""Every key's allowed values: the base table's, and those the registries provide.

A registry (the backbones, the fusions, the tie rules, ...) lives with its implementations, in
a layer above this one. The package root hands this module the function that reads them all
(:func:`vlkge.training.choices.registry_choices`, through :func:`provide`), called on first
use: validation and ``vlkge config show`` see every registry, and no module of the base layer
imports upward (docs/architecture.md, "A config key").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from vlkge.config.schema import CHOICES

_provider: Callable[[], Mapping[str, tuple]] = dict


def provide(provider: Callable[[], Mapping[str, tuple]]) -> None:
    """Set the function that returns ``{dotted key: allowed values}`` of the registry-backed
    keys (the package root does, once)."""
    global _provider
    _provider = provider


def allowed() -> dict[str, tuple]:
    """``{dotted key: allowed values}`` of every key with a fixed set of values."""
    return {k: v for k, v in {**CHOICES, **_provider()}.items() if "/" not in k}


def allowed_given(key: str, other: object) -> tuple:
    """The values of ``key`` allowed when the key it depends on is ``other`` (a registry
    provides them as ``"key/other"``, e.g. the losses a training regime computes)."""
    return tuple(_provider()[f"{key}/{other}"])
