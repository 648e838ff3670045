"""The prompts of the zero-shot baseline (SPEC 5, :mod:`vlkge.evaluation.zero_shot`): each
candidate's name filled into its relation's template, encoded once.

Entity names come from ``zero_shot.name_source``: ``names`` (the dataset's
``entity2name.txt``, falling back to the id), ``label`` (the id) or ``text`` (the entity's first
manifest text). A relation's tail template is ``zero_shot.templates[r]`` (else
``zero_shot.default_template``), its head template ``zero_shot.head_templates[r]`` (else the
tail one).

The prompts of one template are encoded once for all candidates (in the encoder's batches;
identical texts once) and kept for the whole run, so relations and directions that share a
template share the work. Prompt features are also kept in the feature cache folder
(``prompts.safetensors``, rows named by the exact prompt text, reused while the encoder's
weights are the same), so a second run, or ``vlkge report --zero-shot``, encodes no prompt
again.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from vlkge.data.graph import KnowledgeGraph
from vlkge.errors import ConfigError, VlkgeError, echo

if TYPE_CHECKING:
    from vlkge.encoders.cache import FeatureCache

log = logging.getLogger(__name__)

NAME_SOURCES = ("names", "label", "text")  # zero_shot.name_source, see entity_names


def entity_names(kg: KnowledgeGraph, source: str = "names") -> list[str]:
    """The name of every entity that prompts are filled with (see the module docstring)."""
    if source not in NAME_SOURCES:
        raise ConfigError(
            f"zero_shot.name_source must be one of {NAME_SOURCES}, not {echo(source)}"
        )
    out = []
    for entity in kg.entities:
        name = entity
        if source == "text" and kg.manifest is not None and kg.manifest.texts.get(entity):
            name = kg.manifest.texts[entity][0]
        elif source in ("names", "text"):
            name = kg.names.get(entity, entity)
        out.append(" ".join(name.split()))
    return out


def relation_templates(
    kg: KnowledgeGraph, templates: dict[str, str], default: str, key: str = "zero_shot.templates"
) -> list[str]:
    """One template per relation id; names in ``templates`` must be relations of ``kg``."""
    for name, template in templates.items():
        if name not in kg.relation_index:
            close = difflib.get_close_matches(name, kg.relations, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"{key}: unknown relation {echo(name)} in dataset {kg.name}{hint}")
        if "{}" not in template:
            raise ConfigError(
                f"{key}.{echo(name, quote=False)} needs a {{}} for the candidate's name: {echo(template)}"
            )
    if "{}" not in default:
        raise ConfigError(f"zero_shot.default_template needs a {{}}: {echo(default)}")
    return [templates.get(r, default) for r in kg.relations]


def prompt_templates(cfg: dict, kg: KnowledgeGraph) -> tuple[list[str], list[str]]:
    """The tail and the head template of every relation of ``kg`` (``zero_shot.templates``;
    ``head_templates``, else the tail one; else ``default_template``), checked: the commands
    call it before they encode or train anything, so a name that is not a relation of this
    graph stops them at once."""
    settings = cfg["zero_shot"]
    tails = relation_templates(kg, settings["templates"], settings["default_template"])
    relation_templates(
        kg, settings["head_templates"], settings["default_template"], "zero_shot.head_templates"
    )
    heads = [settings["head_templates"].get(r, tails[i]) for i, r in enumerate(kg.relations)]
    return tails, heads


class PromptBank:
    """Normalised text features of filled templates, encoded on demand and kept per template;
    with a feature ``cache``, read from and added to its prompt table, so that a prompt is
    encoded once per encoder, not once per run."""

    def __init__(self, encoder, names: Sequence[str], cache: FeatureCache | None = None):
        if not encoder.has("text"):
            raise VlkgeError(f"encoder {encoder.name} has no text tower to encode prompts")
        self.encoder, self.names, self.cache = encoder, list(names), cache
        self._rows: dict[str, torch.Tensor] = {}  # template -> position per entity (-1: none)
        self._vectors: dict[str, torch.Tensor] = {}
        self._stored: dict[str, torch.Tensor] | None = None  # the cache's, read on first use
        self._every = torch.arange(len(self.names))
        self._in_order: set[str] = set()  # templates whose rows are every entity, by id
        self.encoded = 0  # prompts encoded so far (identical texts once)

    def _features(self, texts: list[str], template: str) -> torch.Tensor:
        """Raw text features of distinct ``texts``: the cached ones read, the rest encoded."""
        if self._stored is None:
            self._stored = self.cache.prompts(self.encoder) if self.cache is not None else {}
        new = [text for text in texts if text not in self._stored]
        if new:
            log.info("encoding %d prompt(s) of template %s", len(new), echo(template))
            fresh = dict(zip(new, self.encoder.encode_texts(new).float(), strict=True))
            self.encoded += len(new)
            if self.cache is not None:
                self.cache.add_prompts(self.encoder, fresh)
            self._stored.update(fresh)
        return torch.stack([self._stored[text] for text in texts])

    def vectors(self, template: str, ids: torch.Tensor) -> torch.Tensor:
        """``[len(ids), w]`` prompt features of ``template`` filled with entities ``ids``; for
        every entity in id order, the stored table itself (read-only: no copy per query)."""
        if self._whole(template, ids):
            return self._vectors[template]
        rows = self._rows.get(template)
        if rows is None:
            rows = self._rows[template] = torch.full((len(self.names),), -1, dtype=torch.long)
            self._vectors[template] = torch.zeros(0, 0)
        missing = ids[rows[ids] < 0].unique()
        if len(missing):
            texts = [template.replace("{}", self.names[e]) for e in missing.tolist()]
            unique = list(dict.fromkeys(texts))
            encoded = F.normalize(self._features(unique, template), dim=-1)
            position = {text: i for i, text in enumerate(unique)}
            new = encoded[[position[t] for t in texts]]
            old = self._vectors[template]
            rows[missing] = torch.arange(len(missing)) + len(old)
            self._vectors[template] = new if len(old) == 0 else torch.cat([old, new])
            if torch.equal(rows, self._every):
                self._in_order.add(template)
        if self._whole(template, ids):
            return self._vectors[template]
        return self._vectors[template][rows[ids]]

    def _whole(self, template: str, ids: torch.Tensor) -> bool:
        """``ids`` is every entity in id order, and so are ``template``'s stored rows."""
        return template in self._in_order and torch.equal(ids, self._every)
