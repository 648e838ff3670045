"""One configuration system: a documented default YAML, user overrides, strict validation.

``configs/default.yaml`` inside the package lists every key with its default and a comment;
``vlkge config show`` prints it. A user file overrides only what differs, ``--set a.b=value``
overrides single keys. The package is the base layer (docs/architecture.md):

- :mod:`~vlkge.config.schema`: what a value may be, one table per kind of rule;
- :mod:`~vlkge.config.choices`: every key's allowed values, the registries' included;
- :mod:`~vlkge.config.tree`: the defaults and the dotted keys naming their leaves;
- :mod:`~vlkge.config.loading`: defaults, file and overrides merged into a resolved config;
- :mod:`~vlkge.config.validation`: types, allowed values, bounds and combinations;
- :mod:`~vlkge.config.compat`: ``compat.paper`` expanded into the keys it stands for;
- :mod:`~vlkge.config.documentation`: a config as YAML, documented for ``config show``.

The allowed values of a key that a registry backs come from the registry: the package root
hands the base layer :func:`vlkge.training.choices.registry_choices`, read on first use.
"""

from vlkge.config.choices import allowed, allowed_given
from vlkge.config.compat import PAPER, expand_paper, with_protocol
from vlkge.config.documentation import documented, dump, inline
from vlkge.config.loading import load_config, load_yaml, parse_override, set_key
from vlkge.config.schema import (
    AT_MOST,
    BELOW_ONE,
    CHOICES,
    EMPTY_SUBSETS_OK,
    ITEMS,
    MAPPINGS,
    NON_NEGATIVE,
    NULLABLE_TYPES,
    POSITIVE,
    SUBSETS,
    UNIT_INTERVAL,
)
from vlkge.config.tree import (
    changed_keys,
    default_text,
    defaults,
    diff,
    dotted_keys,
    get_key,
    key_in,
    suggest,
)
from vlkge.config.validation import validate

__all__ = [
    "AT_MOST",
    "BELOW_ONE",
    "CHOICES",
    "EMPTY_SUBSETS_OK",
    "ITEMS",
    "MAPPINGS",
    "NON_NEGATIVE",
    "NULLABLE_TYPES",
    "PAPER",
    "POSITIVE",
    "SUBSETS",
    "UNIT_INTERVAL",
    "allowed_given",
    "allowed",
    "changed_keys",
    "default_text",
    "defaults",
    "diff",
    "documented",
    "dotted_keys",
    "dump",
    "expand_paper",
    "get_key",
    "inline",
    "key_in",
    "load_config",
    "load_yaml",
    "parse_override",
    "set_key",
    "suggest",
    "validate",
    "with_protocol",
]
