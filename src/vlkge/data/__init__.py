"""Data: triples, vocabularies, splits, the entity manifest and named datasets."""

from vlkge.data.datasets import DATASETS, load_dataset, resolve
from vlkge.data.graph import SPLITS, KnowledgeGraph
from vlkge.data.manifest import EntityManifest

__all__ = ["DATASETS", "SPLITS", "EntityManifest", "KnowledgeGraph", "load_dataset", "resolve"]
