"""Entity names and texts published apart from a dataset's triples (docs/datasets.md): the
:class:`TextSource` registry :data:`TEXTS`, which a :class:`~vlkge.data.registry.DatasetSpec`
names in its ``texts``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vlkge.data.manifest import EntityManifest, read_keyed_texts
from vlkge.errors import DataError

KGBERT = "https://raw.githubusercontent.com/yao8839836/kg-bert/master/data"
VILLMOW = "https://raw.githubusercontent.com/villmow/datasets_knowledge_embedding/master"


@dataclass(frozen=True)
class TextSource:
    """Entity names and texts published apart from a dataset's triples (docs/datasets.md).

    Found like a dataset: in a folder of its own name beside the dataset (``<data dir>/<name>``)
    or in the cache, else downloaded there, each file checked against its SHA-256.
    """

    name: str
    description: str
    read: Callable[[Path], tuple[EntityManifest, dict[str, str]]]  # folder -> texts, names
    required: tuple[str, ...]
    downloads: dict[str, tuple[str, str]] = field(default_factory=dict)
    package: str | None = None  # never shipped inside a package (resolve's interface)
    obtain: str = ""

    def missing(self, folder: Path) -> list[str]:
        return [n for n in self.required if not (folder / n).is_file()]


def wordnet_texts(folder: Path) -> tuple[EntityManifest, dict[str, str]]:
    """KG-BERT's WordNet texts, ``lemma, lemma, ..., definition`` per synset offset: the whole
    line is the entity's text, its first lemma the entity's name."""
    manifest, names = EntityManifest(), {}
    for entity, text in read_keyed_texts(folder / "entity2text.txt").items():
        manifest.add_text(entity, text)
        names[entity] = text.split(",", 1)[0].strip()
    return manifest, names


def freebase_texts(folder: Path) -> tuple[EntityManifest, dict[str, str]]:
    """FB15k-237 names (KG-BERT) and short Wikidata descriptions: an entity's text is its
    description, or its name when it has none (6% of the entities)."""
    names = read_keyed_texts(folder / "entity2name.txt")
    if (folder / "entity2description.txt").is_file():
        descriptions = read_keyed_texts(folder / "entity2description.txt")
    else:  # the downloaded layout: derived from the Wikidata mapping
        descriptions = _wikidata_descriptions(folder / "entity2wikidata.json")
    manifest = EntityManifest()
    for entity, name in names.items():
        manifest.add_text(entity, descriptions.get(entity, name))
    for entity in descriptions.keys() - names.keys():
        manifest.add_text(entity, descriptions[entity])
    return manifest, names


def _wikidata_descriptions(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, None, f"not a JSON object ({exc})") from None
    if not isinstance(entries, dict):
        raise DataError(path, None, "expected one JSON object keyed by entity id")
    return {
        str(key): " ".join(value["description"].split())
        for key, value in entries.items()
        if isinstance(value, dict)
        and isinstance(value.get("description"), str)
        and value["description"].strip()
    }


TEXTS: dict[str, TextSource] = {
    source.name: source
    for source in [
        TextSource(
            "wordnet-text",
            "WordNet 3.0 lemmas and definitions per synset (KG-BERT's entity2text.txt)",
            wordnet_texts,
            required=("entity2text.txt",),
            downloads={
                "entity2text.txt": (
                    f"{KGBERT}/WN18RR/entity2text.txt",
                    "8f5c6f11753dafa879917b9bdf73d398ceb3bd4bed8d5553177e1e0f2c37521f",
                )
            },
        ),
        TextSource(
            "fb15k-237-text",
            "Freebase names (KG-BERT) and short Wikidata descriptions (villmow's mapping)",
            freebase_texts,
            required=("entity2name.txt",),
            downloads={
                "entity2name.txt": (
                    f"{KGBERT}/FB15k-237/entity2text.txt",
                    "16beedcfad3d32696e8b0b98cfa0f5eeb144f5142225f227a64fd9ce37447da5",
                ),
                "entity2wikidata.json": (
                    f"{VILLMOW}/FB15k-237/entity2wikidata.json",
                    "80e74bb002fb9ca0ecd3d63879a3a51121db855d312a101917a1ffb6aed2fea9",
                ),
            },
        ),
    ]
}
