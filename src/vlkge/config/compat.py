"""``compat.paper: true``: the VL-KGE reference implementation, as the concrete keys it sets.

The switch is expanded once, when a config is resolved (:func:`expand_paper`); the code reads
the keys of :data:`PAPER`, never the switch. A key left at its default takes the reference's
value; a key set to another value is overridden with a warning (docs/method.md, "The
compatibility switch").
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from vlkge.config.documentation import inline
from vlkge.config.tree import defaults, get_key, put_key
from vlkge.terms import SPLITS

log = logging.getLogger(__name__)

#: the keys ``compat.paper: true`` sets, and the reference's value of each
PAPER: dict[str, Any] = {
    "evaluation.filter": "merged",
    "evaluation.ties": "ordinal",
    "training.negatives.filter_splits": list(SPLITS),
    "model.rotate_distance": "l2",
    "model.reference_fusion": True,
}


def expand_paper(cfg: dict) -> dict:
    """``cfg`` with the keys of :data:`PAPER` set when ``compat.paper`` is true."""
    if not cfg["compat"]["paper"]:
        return cfg
    base = defaults()
    for key, value in PAPER.items():
        given = get_key(cfg, key)
        if given != value and given != get_key(base, key):
            log.warning(
                "compat.paper: true sets %s: %s (the config's %s is not used)",
                key,
                inline(value),
                inline(given),
            )
        put_key(cfg, key, copy.deepcopy(value))
    return cfg


def with_protocol(evaluation: dict, paper: bool) -> dict:
    """A copy of an ``evaluation`` section under the reference's ranking protocol (``paper``:
    its keys of :data:`PAPER` set to the reference's values) or the default one (those keys
    that hold the reference's values back to their defaults): ``vlkge evaluate --protocol``."""
    base = defaults()
    out = dict(evaluation)
    for key, value in PAPER.items():
        section, _, name = key.partition(".")
        if section != "evaluation":
            continue
        if paper:
            out[name] = value
        elif out[name] == value:
            out[name] = get_key(base, key)
    return out
