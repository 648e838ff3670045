"""Make an inductive benchmark out of a transductive dataset: hold out a fraction of entities.

``vlkge datasets split-inductive NAME --fraction 0.1 --seed 42 --out DIR`` writes a dataset
folder in which the held-out entities never occur in training, so a model must represent them
from their texts and images alone (SPEC 1, 2.5). The rules, in order:

1. **Who can be held out.** Entities that occur in at least one training triple and, when the
   dataset has a manifest (texts or images), have at least one modality in it, so that an
   inductive model can represent them. The number held out is ``round(fraction * E)`` with
   ``E`` every entity of the graph (so ``--fraction 0.1`` holds out 10% of the entities).
2. **Sampling.** Candidates are visited in a random order fixed by ``seed``; a candidate is
   accepted unless holding it out would leave another (kept) entity without any training
   triple, or a relation without any training triple (it would become unseen by accident, or
   unscoreable), or would leave a held-out entity (itself or one accepted before) without any
   triple to a kept entity (it could not be evaluated). Candidates rejected that way are
   skipped and counted; when fewer than the target could be accepted, the split says so
   (``counts.held_out`` vs ``counts.target``).
3. **Valid or test, by entity.** Accepted entities alternate between test and valid (test gets
   the extra one when the number is odd), so each held-out entity belongs to exactly one
   evaluation split: test entities are never seen in valid, and valid entities never in test.
4. **Where triples go.** Every triple touching a held-out entity, whichever split it came
   from, moves to that entity's split; in particular none stays in train. Triples whose two
   ends are both (distinct) held-out entities have no seen anchor: ``pairs="drop"`` (the
   default) removes them, as in the WikiArt-MKG inductive protocol where every test triple
   links an unseen artwork to a seen entity; ``pairs="keep"`` keeps those whose two entities
   fall in the same split (the others would let a test entity appear in valid and are
   dropped). Triples without a held-out entity stay in their original split, so valid and
   test also hold transductive triples: evaluate with ``evaluation.only_unseen: true`` to
   score only the inductive ones.

The output folder holds ``train.txt``/``valid.txt``/``test.txt``, ``manifest.tsv`` (the texts
and images of every entity of the graph, image paths absolute), ``entity2name.txt`` when the
dataset has names, ``split.json`` (parameters, held-out entities per split, counts) and
``README.txt`` (the same, for people). Load it with ``dataset.name: DIR`` and
``dataset.setting: inductive``.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from vlkge.data.graph import KnowledgeGraph
from vlkge.data.manifest import EntityManifest
from vlkge.errors import VlkgeError, echo
from vlkge.terms import SPLITS

log = logging.getLogger(__name__)

PAIRS = ("drop", "keep")
OUTPUT_FILES = ("train.txt", "valid.txt", "test.txt", "manifest.tsv", "split.json", "README.txt")

Triple = tuple[str, str, str]


@dataclass
class InductiveSplit:
    """The outcome of :func:`make_inductive_split`: new splits as labelled triples."""

    source: str
    fraction: float
    seed: int
    pairs: str
    held_out: dict[str, list[str]]  # "valid" / "test" -> entity labels
    splits: dict[str, list[Triple]]
    counts: dict = field(default_factory=dict)

    def group(self) -> dict[str, str]:
        """Held-out entity -> the split it belongs to."""
        return {e: split for split, entities in self.held_out.items() for e in entities}

    def summary(self) -> dict:
        return {
            "source": self.source,
            "fraction": self.fraction,
            "seed": self.seed,
            "pairs": self.pairs,
            "counts": self.counts,
            "held_out": self.held_out,
        }


def eligible_entities(kg: KnowledgeGraph) -> list[int]:
    """Ids of the entities that may be held out (rule 1 of the module docstring)."""
    seen = kg.seen_in_train()
    manifest = kg.manifest
    if manifest is not None and (manifest.texts or manifest.images):
        flags = manifest.availability(kg.entities)
        seen &= flags["text"] | flags["image"]
    return seen.nonzero().squeeze(1).tolist()


def make_inductive_split(
    kg: KnowledgeGraph, fraction: float = 0.1, seed: int = 42, pairs: str = "drop"
) -> InductiveSplit:
    """Hold out ``fraction`` of ``kg``'s entities (see the module docstring for the rules)."""
    if not 0.0 < fraction < 1.0:
        raise VlkgeError(f"--fraction must be between 0 and 1 (exclusive), not {fraction}")
    if pairs not in PAIRS:
        raise VlkgeError(f"pairs must be one of {', '.join(PAIRS)}, not {echo(pairs)}")
    target = round(fraction * kg.num_entities)
    if target < 1:
        raise VlkgeError(f"--fraction {fraction} of {kg.num_entities} entities holds out no entity")
    candidates = eligible_entities(kg)
    if len(candidates) < target:
        raise VlkgeError(
            f"{kg.name}: only {len(candidates)} entities occur in training and have a text or "
            f"image, fewer than the {target} to hold out (--fraction {fraction})"
        )
    random.Random(seed).shuffle(candidates)

    train = kg.train.tolist()
    degree: Counter = Counter()
    per_relation: Counter = Counter()
    incident: dict[int, list[int]] = {}
    for i, (h, r, t) in enumerate(train):
        per_relation[r] += 1
        for e in {h, t}:
            degree[e] += 1
            incident.setdefault(e, []).append(i)
    # neighbours over every split (self-loops aside), for the "keeps an anchor" rule
    neighbours: dict[int, Counter] = {}
    for name in SPLITS:
        if name in kg.splits:
            for h, _, t in kg.splits[name].tolist():
                if h != t:
                    neighbours.setdefault(h, Counter())[t] += 1
                    neighbours.setdefault(t, Counter())[h] += 1
    anchors: dict[int, int] = {}  # held-out entity -> triples to kept entities
    removed = [False] * len(train)
    held: list[int] = []
    rejected = 0
    for entity in candidates:
        if len(held) == target:
            break
        rows = [i for i in incident.get(entity, ()) if not removed[i]]
        others: Counter = Counter()
        relations: Counter = Counter()
        for i in rows:
            h, r, t = train[i]
            relations[r] += 1
            for other in {h, t} - {entity}:
                others[other] += 1
        adjacent = neighbours.get(entity, Counter())
        own_anchors = sum(c for o, c in adjacent.items() if o not in anchors)
        if (
            any(degree[o] <= c for o, c in others.items())
            or any(per_relation[r] <= c for r, c in relations.items())
            or own_anchors == 0
            or any(anchors[o] <= c for o, c in adjacent.items() if o in anchors)
        ):
            rejected += 1
            continue
        for i in rows:
            removed[i] = True
        for other, c in others.items():
            degree[other] -= c
        for r, c in relations.items():
            per_relation[r] -= c
        for other, c in adjacent.items():
            if other in anchors:
                anchors[other] -= c
        degree[entity] = 0
        anchors[entity] = own_anchors
        held.append(entity)
    if len(held) < target:
        log.warning(
            "%s: only %d of %d entities could be held out without leaving another entity or "
            "a relation without training triples",
            kg.name,
            len(held),
            target,
        )

    # rule 3: alternate test / valid in acceptance (random) order
    group = {e: ("test" if i % 2 == 0 else "valid") for i, e in enumerate(held)}
    new: dict[str, dict[Triple, None]] = {s: {} for s in SPLITS}
    moved: Counter = Counter()  # (from, to) -> triples
    dropped = dropped_cross = 0
    for split in SPLITS:
        if split not in kg.splits:
            continue
        for h, r, t in kg.splits[split].tolist():
            triple = (kg.entities[h], kg.relations[r], kg.entities[t])
            gh, gt = group.get(h), group.get(t)
            if gh is None and gt is None:
                new[split][triple] = None
                continue
            if gh is not None and gt is not None and h != t:
                if pairs == "drop":
                    dropped += 1
                    continue
                if gh != gt:
                    dropped_cross += 1
                    continue
            destination = gh or gt
            new[destination][triple] = None
            moved[f"{split}->{destination}"] += 1
    splits = {s: list(rows) for s, rows in new.items()}
    for split in ("valid", "test"):
        if not splits[split]:
            raise VlkgeError(f"{kg.name}: the new {split} split would be empty; raise --fraction")

    labels = {s: sorted(kg.entities[e] for e in held if group[e] == s) for s in ("valid", "test")}
    held_sets = {s: set(labels[s]) for s in labels}
    touched = {s: {e for h, _, t in splits[s] for e in (h, t)} for s in ("valid", "test")}
    counts = {
        "entities": kg.num_entities,
        "eligible": len(eligible_entities(kg)),
        "target": target,
        "held_out": len(held),
        "held_out_valid": len(labels["valid"]),
        "held_out_test": len(labels["test"]),
        "rejected": rejected,
        "held_out_without_triples": sum(
            e not in touched[s] for s in ("valid", "test") for e in labels[s]
        ),
        "triples_before": {s: len(kg.splits[s]) for s in SPLITS if s in kg.splits},
        "triples_after": {s: len(splits[s]) for s in SPLITS},
        "triples_with_held_out": {
            s: sum(h in held_sets[s] or t in held_sets[s] for h, _, t in splits[s])
            for s in ("valid", "test")
        },
        "moved": dict(sorted(moved.items())),
        "dropped_between_held_out": dropped,
        "dropped_across_splits": dropped_cross,
    }
    return InductiveSplit(kg.name, fraction, seed, pairs, labels, splits, counts)


def _readme(split: InductiveSplit) -> str:
    c = split.counts
    lines = [
        f"Inductive split of {split.source} written by `vlkge datasets split-inductive`.",
        "",
        f"fraction {split.fraction}, seed {split.seed}, pairs {split.pairs}",
        f"held out {c['held_out']} of {c['entities']} entities (target {c['target']}, "
        f"{c['eligible']} eligible, {c['rejected']} rejected): {c['held_out_valid']} in valid, "
        f"{c['held_out_test']} in test",
        "triples: "
        + ", ".join(
            f"{s} {c['triples_before'].get(s, 0)} -> {c['triples_after'][s]}" for s in SPLITS
        ),
        "triples with a held-out entity: "
        + ", ".join(f"{s} {n}" for s, n in c["triples_with_held_out"].items()),
        f"moved: {json.dumps(c['moved'])}",
        f"dropped (both ends held out): {c['dropped_between_held_out']}; "
        f"dropped (held-out ends in different splits): {c['dropped_across_splits']}",
        "",
        "Rules:",
        "- held-out entities are sampled (seeded) among entities that occur in training and have",
        "  a text or image in the manifest (when the dataset has one); a candidate is skipped if",
        "  removing its triples would leave another entity or a relation without training triples,",
        "  or a held-out entity without any triple to a kept entity;",
        "- each held-out entity belongs to valid or test (alternating; test gets the odd one), and",
        "  every triple touching it, from any split, moves to that split: no held-out entity is in",
        "  train, test entities are never in valid and valid entities never in test;",
        "- triples between two held-out entities are dropped (pairs=drop), or kept when both",
        "  entities are in the same split (pairs=keep);",
        "- valid/test triples without a held-out entity stay (use evaluation.only_unseen: true to",
        "  score only the triples touching an unseen entity).",
        "",
        "Load with: dataset.name: <this folder>, dataset.setting: inductive",
        "Held-out entities per split: split.json",
    ]
    return "\n".join(lines) + "\n"


def write_inductive_split(
    kg: KnowledgeGraph, split: InductiveSplit, out: str | os.PathLike, force: bool = False
) -> Path:
    """Write ``split`` as a dataset folder (see the module docstring); returns the folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VlkgeError(f"{out} exists and is not a folder")
    if out.is_dir() and not force:
        existing = [n for n in (*OUTPUT_FILES, "entity2name.txt") if (out / n).exists()]
        if existing:
            raise VlkgeError(
                f"{out} already holds a dataset ({', '.join(existing)}); choose another --out "
                "or pass --force"
            )
    out.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        text = "".join("\t".join(row) + "\n" for row in split.splits[name])
        (out / f"{name}.txt").write_text(text, encoding="utf-8")
    if kg.manifest is not None:
        manifest = EntityManifest()
        for entity in kg.entities:
            for text in kg.manifest.texts.get(entity, ()):
                manifest.add_text(entity, text)
            for image in kg.manifest.images.get(entity, ()):
                manifest.add_image(entity, os.path.abspath(image))
        manifest.write(out / "manifest.tsv")
    if kg.names:
        rows = [f"{e}\t{' '.join(kg.names[e].split())}\n" for e in kg.entities if e in kg.names]
        (out / "entity2name.txt").write_text("".join(rows), encoding="utf-8")
    (out / "split.json").write_text(json.dumps(split.summary(), indent=2) + "\n", encoding="utf-8")
    (out / "README.txt").write_text(_readme(split), encoding="utf-8")
    return out


def split_inductive(
    name_or_path: str,
    out: str | os.PathLike,
    fraction: float = 0.1,
    seed: int = 42,
    data_dir: str | os.PathLike | None = None,
    image_root: str | os.PathLike | None = None,
    pairs: str = "drop",
    force: bool = False,
) -> InductiveSplit:
    """Load a dataset, hold out ``fraction`` of its entities and write the folder ``out``."""
    from vlkge.data.datasets import load_dataset

    kg = load_dataset(name_or_path, data_dir=data_dir, image_root=image_root, unseen="keep")
    split = make_inductive_split(kg, fraction, seed, pairs)
    write_inductive_split(kg, split, out, force)
    return split
