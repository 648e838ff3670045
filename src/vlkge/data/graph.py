"""The knowledge graph: vocabularies plus integer triples per split.

Entity ids are assigned train-first (in order of first appearance), so every entity a model
has a structural embedding for has a smaller id than every entity seen only in valid/test.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

import torch

from vlkge.data.manifest import EntityManifest
from vlkge.data.triples import LabeledTriples
from vlkge.errors import ConfigError, DataError, VlkgeError, echo
from vlkge.terms import SPLITS

log = logging.getLogger(__name__)


def _report(triples, rows: list[int], what: str, level: int) -> None:
    """Log ``len(rows)`` findings in a split's file with the line of the first one."""
    if rows:
        first = triples.lines[rows[0]]
        log.log(level, "%s: %d %s line %d)", triples.path, len(rows), what, first)


@dataclass
class KnowledgeGraph:
    """Entities, relations and the id-triples of each split (``LongTensor[n, 3]``: h, r, t)."""

    name: str
    entities: list[str]
    relations: list[str]
    splits: dict[str, torch.Tensor]
    manifest: EntityManifest | None = None
    inductive: bool = False
    names: dict[str, str] = field(default_factory=dict)  # human-readable entity names

    @functools.cached_property
    def entity_index(self) -> dict[str, int]:
        """Label -> id, built at the first look-up by label (training never makes one: a
        graph of 10M entities saves ~1 GB)."""
        return {e: i for i, e in enumerate(self.entities)}

    @functools.cached_property
    def relation_index(self) -> dict[str, int]:
        return {r: i for i, r in enumerate(self.relations)}

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    @property
    def train(self) -> torch.Tensor:
        return self.splits["train"]

    def all_triples(self) -> torch.Tensor:
        """Every known triple from every split (for filtering)."""
        return torch.cat([self.splits[s] for s in SPLITS if s in self.splits])

    def seen_in_train(self) -> torch.Tensor:
        """Boolean mask over entities: appears as head or tail of a training triple."""
        mask = torch.zeros(self.num_entities, dtype=torch.bool)
        mask[self.train[:, 0]] = True
        mask[self.train[:, 2]] = True
        return mask

    def display_name(self, entity: int) -> str:
        label = self.entities[entity]
        return self.names.get(label, label)

    def entity_id(self, label: str) -> int:
        try:
            return self.entity_index[label]
        except KeyError:
            raise VlkgeError(f"unknown entity {echo(label)} in dataset {self.name}") from None

    def relation_id(self, label: str) -> int:
        try:
            return self.relation_index[label]
        except KeyError:
            raise self.unknown_relation(label) from None

    def unknown_relation(self, name: str, key: str | None = None) -> VlkgeError:
        """The one-line error for a relation ``name`` the graph lacks, listing the first known
        ones; a ``ConfigError`` naming ``key`` when the name came from that config key."""
        known = ", ".join(echo(r, quote=False, limit=30) for r in self.relations[:12])
        more = ", ..." if self.num_relations > 12 else ""
        message = f"unknown relation {echo(name)} in dataset {self.name} (known: {known}{more})"
        return ConfigError(f"{key}: {message}") if key else VlkgeError(message)

    def with_inverse_relations(
        self, mapping: dict[str, str], key: str = "dataset.inverse_relations"
    ) -> KnowledgeGraph:
        """A copy with training-only inverse relations: for every ``relation -> inverse`` and
        every training triple (h, relation, t), (t, inverse, h) is added to train unless it is
        already there. ``inverse`` joins the vocabulary (after the existing relations) when the
        data lack it; valid and test are unchanged. ``key`` names the option in errors."""
        if not mapping:
            return self
        relations = list(self.relations)
        index = dict(self.relation_index)
        pairs = []
        for name, inverse in mapping.items():
            if name not in index:
                raise self.unknown_relation(name, key)
            if inverse not in index:
                index[inverse] = len(relations)
                relations.append(inverse)
            pairs.append((index[name], index[inverse]))
        train = self.train
        added = []
        for rel, inv in pairs:
            rows = train[train[:, 1] == rel]
            added.append(torch.stack([rows[:, 2], torch.full_like(rows[:, 1], inv), rows[:, 0]], 1))
        combined = torch.cat([train, *added])
        # keep the first occurrence of every triple (train's own rows come first)
        keys = (combined[:, 0] * len(relations) + combined[:, 1]) * self.num_entities
        ordered, order = torch.sort(keys + combined[:, 2], stable=True)
        repeat = torch.zeros_like(ordered, dtype=torch.bool)
        repeat[1:] = ordered[1:] == ordered[:-1]
        keep = ~torch.zeros_like(repeat).scatter_(0, order, repeat)
        splits = dict(self.splits)
        splits["train"] = combined[keep]
        log.info(
            "%s: %d training-only inverse triple(s) added (%s)",
            self.name,
            len(splits["train"]) - len(train),
            ", ".join(f"{n} -> {i}" for n, i in mapping.items()),
        )
        return KnowledgeGraph(
            name=self.name,
            entities=self.entities,
            relations=relations,
            splits=splits,
            manifest=self.manifest,
            inductive=self.inductive,
            names=self.names,
        )

    @classmethod
    def from_labeled(
        cls,
        name: str,
        splits: dict[str, LabeledTriples],
        manifest: EntityManifest | None = None,
        inductive: bool = False,
        unseen: str = "error",
        quiet: bool = False,
    ) -> KnowledgeGraph:
        """Index labelled splits, checking them the way a careful user would.

        - duplicate triples inside a split are reported and dropped;
        - a relation that training never saw is an error (nothing can score it);
        - an entity that training never saw is handled by ``unseen``: ``error`` (the default
          for a transductive setting), ``keep`` (it joins the vocabulary with an untrained
          embedding: the published WN18RR/FB15k-237 protocol) or ``drop`` (its triples are
          removed, with a warning); ``inductive`` always keeps them;
        - self-loops, and valid/test triples that are also training triples, are reported.

        ``quiet`` logs these findings at debug level only: a graph loaded again to evaluate
        or predict with a trained run was reported when it was loaded for training.
        """
        if unseen not in ("error", "keep", "drop"):
            raise ValueError(f"unseen must be error, keep or drop, not {unseen!r}")
        if "train" not in splits:
            raise DataError(None, None, f"dataset {name} has no train split")
        for split, triples in splits.items():
            if split not in SPLITS:
                raise DataError(triples.path, None, f"unknown split name {echo(split)}")
            if len(triples) == 0:
                raise DataError(triples.path, None, f"the {split} split is empty")

        entity_index: dict[str, int] = {}
        relation_index: dict[str, int] = {}
        for h, r, t in splits["train"].rows:
            entity_index.setdefault(h, len(entity_index))
            relation_index.setdefault(r, len(relation_index))
            entity_index.setdefault(t, len(entity_index))
        num_train_entities = len(entity_index)

        tensors: dict[str, torch.Tensor] = {}
        in_train: set[tuple[int, int, int]] = set()
        for split in SPLITS:
            if split not in splits:
                continue
            triples = splits[split]
            ids = []
            seen: set[tuple[int, int, int]] = set()
            duplicates, self_loops, leaked, dropped = [], [], [], 0  # row positions
            for i, (h, r, t) in enumerate(triples.rows):
                if r not in relation_index:
                    raise DataError(
                        triples.path,
                        triples.lines[i],
                        f"relation {echo(r)} does not occur in the training split",
                    )
                new = [e for e in (h, t) if e not in entity_index]
                if new and not inductive and unseen != "keep":
                    if unseen == "drop":
                        dropped += 1
                        continue
                    raise DataError(
                        triples.path,
                        triples.lines[i],
                        f"entity {echo(new[0])} does not occur in the training split (set "
                        "dataset.setting: inductive, or dataset.unseen_entities: keep or drop)",
                    )
                for entity in new:
                    entity_index.setdefault(entity, len(entity_index))
                key = (entity_index[h], relation_index[r], entity_index[t])
                if key in seen:
                    duplicates.append(i)
                    continue
                seen.add(key)
                if h == t:
                    self_loops.append(i)
                if key in in_train:
                    leaked.append(i)
                ids.append(key)
            if split == "train":
                in_train = seen
            warning = logging.DEBUG if quiet else logging.WARNING
            _report(
                triples, duplicates, "duplicate triple(s) dropped (the first repeat is", warning
            )
            if dropped:
                log.log(
                    warning,
                    "%s: %d triple(s) with entities unseen in train dropped",
                    triples.path,
                    dropped,
                )
            # self loops are common in benchmarks (FB15k-237: 1,625 in train): not a warning
            _report(
                triples,
                self_loops,
                "self-loop triple(s) (h = t) kept (the first is",
                logging.DEBUG if quiet else logging.INFO,
            )
            _report(
                triples,
                leaked,
                f"{split} triple(s) also in the train split, kept (the first is",
                warning,
            )
            tensors[split] = torch.tensor(ids, dtype=torch.long).reshape(-1, 3)

        entities = list(entity_index)
        if manifest is not None and inductive:
            # entities that carry modalities but no triple still get an id (inductive pool)
            for label in manifest.entities():
                if label not in entity_index:
                    entity_index[label] = len(entity_index)
                    entities.append(label)
        log.debug("%s: %d entities (%d in train)", name, len(entities), num_train_entities)
        return cls(
            name=name,
            entities=entities,
            relations=list(relation_index),
            splits=tensors,
            manifest=manifest,
            inductive=inductive,
        )
