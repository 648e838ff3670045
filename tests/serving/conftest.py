"""Tiny finished runs for the serving tests, made once per session in a few seconds: a
multimodal run on a small art graph (names, texts, images; one image corrupt, one missing; a
name full of HTML) whose features a tiny CLIP wrote, so new entities are encoded as `vlkge
predict` encodes them, and a structural run on the same graph."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import write_graph as write_toy_graph

pytest.importorskip("fastapi")
pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")

NAMES = {
    "monet": "Claude Monet",
    "renoir": "Pierre-Auguste Renoir",
    "degas": "Edgar Degas",
    "cezanne": "Paul Cézanne",
    "picasso": "Pablo Picasso",
    "braque": "Georges Braque",
    "impressionism": "Impressionism",
    "cubism": "Cubism",
    "paris": "Paris",
    "malaga": "Málaga",
    "xss": "<script>alert('x')</script> & <b>co</b>",
}
TRAIN = [
    ("monet", "movement", "impressionism"),
    ("renoir", "movement", "impressionism"),
    ("picasso", "movement", "cubism"),
    ("monet", "influenced", "cezanne"),
    ("cezanne", "influenced", "picasso"),
    ("cezanne", "influenced", "braque"),
    ("monet", "born_in", "paris"),
    ("degas", "born_in", "paris"),
    ("picasso", "born_in", "malaga"),
    ("xss", "movement", "cubism"),
    ("degas", "influenced", "xss"),
]
VALID = [("degas", "movement", "impressionism"), ("renoir", "born_in", "paris")]
TEST = [("braque", "movement", "cubism"), ("renoir", "influenced", "picasso")]
COLOURS = {
    "monet": (90, 140, 220),
    "renoir": (230, 160, 120),
    "picasso": (40, 40, 40),
    "cubism": (120, 110, 90),
    "impressionism": (150, 200, 240),
}
FAST = [
    "model.dim=6",
    "model.gamma=2",
    "training.epochs=3",
    "training.batch_size=4",
    "training.negatives.num=2",
    "training.progress=false",
    "num_threads=1",
    "compile=false",
    "report.samples=2",
    "report.top_k=3",
]


def write_graph(folder: Path) -> Path:
    return write_toy_graph(
        folder,
        {"train": TRAIN, "valid": VALID, "test": TEST},
        names=NAMES,
        texts={e: f"{n} is part of the history of painting" for e, n in NAMES.items()},
        colours=COLOURS,
        broken="degas",
        missing="cezanne",
    )


class Runs:
    """Paths of the session's runs and of the tiny CLIP that wrote their features."""

    def __init__(self, root: Path):
        from tiny_models import tiny_clip_folder

        from vlkge.config import load_config
        from vlkge.data.datasets import load_dataset
        from vlkge.encoders import build_encoder
        from vlkge.encoders.cache import FeatureCache
        from vlkge.reports import write_report
        from vlkge.training.run import train

        self.root = root
        self.clip = tiny_clip_folder(root / "tiny-clip")
        graph = write_graph(root / "art")
        kg = load_dataset(str(graph))
        cache = root / "cache"
        FeatureCache(cache).update(
            build_encoder(str(self.clip)), kg.manifest, kg.entities, workers=0
        )
        base = [f"dataset.name={graph}", f"features.cache_dir={cache}", *FAST]
        self.multimodal = root / "vl"
        train(load_config(overrides=[*base, "model.modalities=[image, text]"]), self.multimodal)
        write_report(self.multimodal)
        self.structural = root / "structural"
        train(load_config(overrides=base), self.structural)


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> Runs:
    return Runs(tmp_path_factory.mktemp("serve-runs"))


@pytest.fixture(scope="session")
def app(runs):
    from vlkge.serving import create_app, load_served_runs

    return create_app(load_served_runs([runs.multimodal, runs.structural]))


@pytest.fixture(scope="session")
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        yield client


def png(colour=(200, 30, 30), size=(20, 16)) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()
