"""Tiny finished runs for the report tests: a structural run on Nations (no manifest), a
multimodal run on a toy graph with names, texts and images (one missing, one corrupt), and a
zero-shot run on that graph; all made once per session in a few seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import LetterColourEncoder
from fakes import write_graph as write_toy_graph

from vlkge.config import load_config
from vlkge.data.datasets import load_dataset
from vlkge.encoders.cache import FeatureCache

pytest.importorskip("PIL.Image")

ENTITIES = ["cat", "dog", "fox", "wolf", "oak", "elm", "rose", "tulip"]
TRAIN = [
    ("cat", "eats", "rose"),
    ("dog", "eats", "oak"),
    ("fox", "eats", "tulip"),
    ("wolf", "eats", "elm"),
    ("cat", "near", "dog"),
    ("dog", "near", "fox"),
    ("fox", "near", "wolf"),
    ("oak", "near", "elm"),
    ("rose", "near", "tulip"),
    ("wolf", "near", "cat"),
]
VALID = [("cat", "eats", "tulip"), ("elm", "near", "oak")]
TEST = [("dog", "eats", "rose"), ("tulip", "near", "rose"), ("fox", "eats", "oak")]
COLOURS = {"cat": (200, 40, 40), "dog": (40, 200, 40), "oak": (40, 40, 200), "rose": (90, 9, 9)}


def write_graph(folder: Path) -> Path:
    return write_toy_graph(
        folder,
        {"train": TRAIN, "valid": VALID, "test": TEST},
        names={e: f"the {e}" for e in ENTITIES},
        texts={e: f"a {e} is a living thing" for e in ENTITIES[:6]},
        colours=COLOURS,
        broken="fox",
        missing="wolf",
    )


FAST = [
    "model.dim=6",
    "training.epochs=3",
    "training.batch_size=4",
    "training.negatives.num=2",
    "training.progress=false",
    "num_threads=1",
    "compile=false",
    "report.samples=3",
    "report.top_k=3",
]


class Runs:
    """Paths of the session's runs and the stub encoder that wrote their features."""

    def __init__(self, root: Path):
        from vlkge.cli import main
        from vlkge.evaluation.zero_shot import run_zero_shot
        from vlkge.training.run import train

        self.root = root
        self.encoder = LetterColourEncoder(image_width=6, batch_size=8)
        graph = write_graph(root / "toy")
        kg = load_dataset(str(graph))
        cache = root / "cache"
        FeatureCache(cache).update(self.encoder, kg.manifest, kg.entities, workers=0)
        base = [f"dataset.name={graph}", f"features.cache_dir={cache}", *FAST]
        self.zero_shot = root / "zero-shot"
        run_zero_shot(
            load_config(overrides=[*base, "zero_shot.templates={eats: 'it eats {}'}"]),
            self.zero_shot,
            encoder=self.encoder,
        )
        self.multimodal = root / "vl"
        multimodal = load_config(
            overrides=[*base, "model.modalities=[image, text]", "report.after_train=false"]
        )
        train(multimodal, self.multimodal)
        self.structural = root / "nations"  # through the CLI, which chains train and report
        settings = [
            "dataset.name=nations",
            *FAST,
            "model.dim=8",
            "training.batch_size=256",
            "validation.every=0",
            "training.negatives.filter_splits=[]",
        ]
        argv = ["train", "--out", str(self.structural)]
        for item in settings:
            argv += ["--set", item]
        assert main(argv) == 0


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> Runs:
    return Runs(tmp_path_factory.mktemp("report-runs"))
