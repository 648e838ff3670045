"""Loading a dataset: a named one (:mod:`vlkge.data.registry`, found or downloaded by
:mod:`vlkge.data.download`) or any folder with ``train/valid/test.txt`` or a triples CSV, with its
manifest, entity names and texts (:mod:`vlkge.data.texts`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vlkge.data.download import resolve
from vlkge.data.graph import KnowledgeGraph
from vlkge.data.manifest import EntityManifest, read_keyed_texts
from vlkge.data.registry import (
    DATASETS,
    DatasetSpec,
    csv_file,
    get_spec,
    manifest_file,
    tsv_files,
    wn9_manifest,
)
from vlkge.data.texts import TEXTS
from vlkge.data.triples import LabeledTriples, read_csv_splits, read_tsv_triples
from vlkge.errors import DataError, VlkgeError

log = logging.getLogger(__name__)


def entity_names(folder: Path) -> dict[str, str]:
    """Human-readable names, when the dataset has them (``entity2name.txt``)."""
    path = folder / "entity2name.txt"
    return read_keyed_texts(path) if path.is_file() else {}


def read_splits(folder: Path, spec: DatasetSpec | None = None) -> dict[str, LabeledTriples]:
    """Read the triple files of a dataset folder (TSV per split, or one WikiArt CSV)."""
    if spec is not None and spec.csv or (spec is None and csv_file(folder)):
        path = csv_file(folder)
        if path is None:
            raise DataError(folder, None, "no triples CSV (expected triples.csv)")
        return read_csv_splits(path)
    files = spec.files if spec is not None else tsv_files()
    splits: dict[str, LabeledTriples] = {}
    for split, names in files.items():
        path = next((folder / n for n in names if (folder / n).is_file()), None)
        if path is not None:
            splits[split] = read_tsv_triples(path)
    if "train" not in splits:
        raise DataError(folder, None, "no train.txt (tab-separated head, relation, tail)")
    return splits


def load_dataset(
    name_or_path: str,
    data_dir: str | os.PathLike | None = None,
    inductive: bool = False,
    with_manifest: bool = True,
    image_root: str | os.PathLike | None = None,
    unseen: str | None = None,
    quiet: bool = False,
) -> KnowledgeGraph:
    """Load a named dataset, or any folder with ``train/valid/test.txt`` or a triples CSV.

    ``unseen`` (``error``/``keep``/``drop``) overrides the dataset's published handling of
    valid/test entities that training never saw; ``quiet`` keeps the data's findings
    (duplicates, self-loops, overlaps) at debug level (see ``KnowledgeGraph.from_labeled``).
    """
    path = Path(name_or_path)
    if name_or_path.lower() in DATASETS:
        spec: DatasetSpec | None = get_spec(name_or_path)
        folder = resolve(name_or_path, data_dir)
        name = spec.name
    elif path.is_dir():
        spec, folder, name = None, path, path.name
    else:
        get_spec(name_or_path)  # raises with the list of known names
        raise AssertionError
    manifest = None
    if with_manifest:
        if spec is not None and spec.manifest is wn9_manifest:
            manifest = wn9_manifest(folder, image_root)
        elif spec is not None and spec.manifest is not None:
            manifest = spec.manifest(folder)
        else:
            manifest = manifest_file(folder)
    names = entity_names(folder)
    if spec is not None and spec.texts and manifest is None and (with_manifest or not names):
        try:
            texts, text_names = load_texts(spec.texts, data_dir or folder.parent)
        except DataError:
            raise
        except VlkgeError as exc:  # not found, not downloadable: a structural model needs none
            log.warning("%s: no entity texts (%s)", name, exc)
        else:
            manifest = texts if with_manifest else None
            names = names or text_names
    unseen = unseen or (spec.unseen if spec is not None else "error")
    kg = KnowledgeGraph.from_labeled(
        name,
        read_splits(folder, spec),
        manifest=manifest,
        inductive=inductive,
        unseen=unseen,
        quiet=quiet,
    )
    kg.names = names
    return kg


def load_texts(name: str, data_dir: str | os.PathLike) -> tuple[EntityManifest, dict[str, str]]:
    """The entity texts (as a manifest) and names of text source ``name``."""
    source = TEXTS[name]
    return source.read(resolve(name, data_dir, spec=source))


def load_graph(dataset: dict, quiet: bool = False) -> KnowledgeGraph:
    """The graph a config's ``dataset`` section names, with its training-only inverse
    relations; ``quiet``: its findings were already reported when the run trained."""
    kg = load_dataset(
        dataset["name"],
        data_dir=dataset["data_dir"],
        inductive=dataset["setting"] == "inductive",
        unseen=dataset["unseen_entities"],
        quiet=quiet,
    )
    return kg.with_inverse_relations(dataset["inverse_relations"])
