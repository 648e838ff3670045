"""Data: triples, vocabularies, splits, the entity manifest and named datasets."""

from vlkge.data.datasets import load_dataset
from vlkge.data.download import resolve
from vlkge.data.graph import KnowledgeGraph
from vlkge.data.manifest import EntityManifest
from vlkge.data.registry import DATASETS

__all__ = ["DATASETS", "EntityManifest", "KnowledgeGraph", "load_dataset", "resolve"]
