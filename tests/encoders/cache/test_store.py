"""The feature cache: reuse, partial re-encoding, resuming, corruption, alignment."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_clip
from fakes import LetterColourEncoder

from vlkge.data.manifest import EntityManifest
from vlkge.encoders.cache import FeatureCache, ModalFeatures
from vlkge.encoders.hf import HFEncoder
from vlkge.errors import DataError, VlkgeError


class Counting(HFEncoder):
    """Counts encoded texts and images; optionally fails after ``fail_after`` batches."""

    def __init__(self, *args, fail_after: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.texts = self.images = self.batches = 0
        self.fail_after = fail_after

    def _tick(self):
        self.batches += 1
        if self.fail_after is not None and self.batches > self.fail_after:
            raise KeyboardInterrupt

    def encode_texts(self, texts):
        self._tick()
        self.texts += len(texts)
        return super().encode_texts(texts)

    def encode_pixels(self, pixels):
        self._tick()
        self.images += len(pixels)
        return super().encode_pixels(pixels)


@pytest.fixture(scope="module")
def parts():
    return tiny_clip()


def encoder(parts, **kwargs):
    model, tokenizer, processor = parts
    return Counting(model, tokenizer, processor, name="tiny-clip", batch_size=2, **kwargs)


@pytest.fixture
def manifest(write_images, tmp_path):
    images = write_images(4)
    m = EntityManifest()
    for i, entity in enumerate(["e0", "e1", "e2", "e3", "e4", "e5"]):
        m.add_text(entity, f"gloss of entity number {i}")
    m.add_text("e1", "a second text for e1")
    m.add_image("e0", str(images[0]))
    m.add_image("e0", str(images[1]))
    m.add_image("e2", str(images[2]))
    m.add_image("e6", str(images[3]))  # image only
    m.add_image("e7", str(tmp_path / "missing.png"))  # nothing usable
    return m


def test_update_then_reuse(parts, manifest, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    enc = encoder(parts)
    reports = cache.update(enc, manifest)
    assert reports["text"].encoded == 6 and reports["image"].encoded == 4
    assert enc.texts == 7 and enc.images == 4
    assert reports["image"].failures == {"e7": [(str(tmp_path / "missing.png"), "missing")]}
    assert reports["image"].without_feature == ["e7"]
    assert "1 image missing or unreadable in 1 entity" in reports["image"].summary()

    entities = ["e3", "e0", "unknown", "e1", "e6", "e7"]
    loaded = cache.load(entities)
    assert set(loaded) == {"text", "image"}
    text, text_mask = loaded["text"]
    assert isinstance(loaded["text"], ModalFeatures) and text.shape == (6, 24)
    assert text_mask.tolist() == [True, True, False, True, False, False]
    assert torch.equal(text[2], torch.zeros(24))
    torch.testing.assert_close(text[0], enc.encode_texts(["gloss of entity number 3"])[0])
    torch.testing.assert_close(
        text[3], enc.encode_texts(["gloss of entity number 1", "a second text for e1"]).mean(0)
    )
    image, image_mask = loaded["image"]
    assert image_mask.tolist() == [False, True, False, False, True, False]
    meta = cache.metadata("image")
    assert meta["encoder"] == "tiny-clip" and meta["fingerprint"] == enc.fingerprint
    assert meta["width"] == 24 and "CLIPImageProcessorPil" in meta["preprocessing"]
    assert meta["failed_inputs"]["e7"][0][1] == "missing"

    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()}
    again = encoder(parts)
    reports = cache.update(again, manifest)
    assert again.texts == 0 and again.images == 0  # nothing encoded the second time
    assert reports["text"].reused == 6 and reports["image"].reused == 4
    assert reports["image"].without_feature == ["e7"]  # still reported
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()} == before


def test_changed_inputs_reencode_only_those(parts, manifest, tmp_path, write_images):
    cache = FeatureCache(tmp_path / "cache")
    cache.update(encoder(parts), manifest)
    old = cache.load(["e0", "e2", "e4"])
    manifest.texts["e4"] = ["a changed gloss"]
    new_image = write_images(1, start=40, folder=tmp_path / "new")[0]
    manifest.images["e2"][0] = str(new_image)
    enc = encoder(parts)
    reports = cache.update(enc, manifest)
    assert (reports["text"].encoded, reports["text"].reused) == (1, 5)
    assert (reports["image"].encoded, reports["image"].reused) == (1, 3)
    assert enc.texts == 1 and enc.images == 1
    new = cache.load(["e0", "e2", "e4"])
    assert torch.equal(new["image"].features[0], old["image"].features[0])
    assert not torch.equal(new["image"].features[1], old["image"].features[1])
    torch.testing.assert_close(new["text"].features[2], enc.encode_texts(["a changed gloss"])[0])
    # rewriting an image file's bytes in place is a change too
    from conftest import random_image

    random_image(99).save(new_image)
    enc = encoder(parts)
    assert cache.update(enc, manifest, modalities=["image"])["image"].encoded == 1
    # an entity of the graph that loses its text loses its row
    del manifest.texts["e5"]
    graph = [*manifest.entities(), "e5"]
    report = cache.update(encoder(parts), manifest, graph, modalities=["text"])["text"]
    assert report.removed == 1 and not cache.load(["e5"])["text"].mask.any()


def test_changed_encoder_invalidates(parts, manifest, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    cache.update(encoder(parts), manifest, modalities=["text"])
    model, tokenizer, processor = tiny_clip()
    with torch.no_grad():
        model.text_projection.weight.mul_(2)
    other = Counting(model, tokenizer, processor, name="tiny-clip", batch_size=2)
    report = cache.update(other, manifest, modalities=["text"])["text"]
    assert report.encoded == 6 and report.reused == 0
    assert cache.metadata("text")["fingerprint"] == other.fingerprint


def test_interrupted_run_resumes(parts, manifest, tmp_path):
    folder = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        FeatureCache(folder).update(
            encoder(parts, fail_after=2), manifest, modalities=["text"], shard_size=2
        )
    shards = sorted(p.name for p in folder.glob("text.part-*"))
    assert shards == ["text.part-000000.safetensors", "text.part-000001.safetensors"]
    assert not (folder / "text.safetensors").exists()
    with pytest.raises(VlkgeError, match="incomplete"):
        FeatureCache(folder).load(["e0"])
    enc = encoder(parts)
    report = FeatureCache(folder).update(enc, manifest, modalities=["text"], shard_size=2)
    assert (report["text"].reused, report["text"].encoded) == (4, 2)
    assert enc.texts == 2
    assert not list(folder.glob("text.part-*"))
    # the resumed cache equals an uninterrupted one
    fresh = FeatureCache(tmp_path / "fresh")
    fresh.update(encoder(parts), manifest, modalities=["text"])
    entities = manifest.entities()
    a, b = FeatureCache(folder).load(entities)["text"], fresh.load(entities)["text"]
    torch.testing.assert_close(a.features, b.features, atol=1e-6, rtol=1e-6)
    assert torch.equal(a.mask, b.mask)


def test_interrupted_image_run_resumes(parts, manifest, tmp_path):
    folder = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        FeatureCache(folder).update(
            encoder(parts, fail_after=1), manifest, modalities=["image"], shard_size=1
        )
    assert list(folder.glob("image.part-*"))
    enc = encoder(parts)
    report = FeatureCache(folder).update(enc, manifest, modalities=["image"], shard_size=1)
    assert report["image"].reused >= 1 and report["image"].encoded < 4
    assert FeatureCache(folder).load(["e0", "e6"])["image"].mask.all()


def test_corrupt_cache_file(parts, manifest, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    cache.update(encoder(parts), manifest, modalities=["text"])
    path = cache.features_path("text")
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(DataError, match="corrupt feature cache") as info:
        cache.load(["e0"])
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    enc = encoder(parts)
    report = cache.update(enc, manifest, modalities=["text"])["text"]  # recomputed
    assert report.encoded == 6 and cache.load(["e0"])["text"].mask.all()
    # garbage in the JSON description is reported, not a traceback
    cache.metadata_path("text").write_text("{not json")
    with pytest.raises(DataError, match="corrupt cache metadata"):
        cache.metadata("text")


def test_load_errors(parts, manifest, tmp_path):
    with pytest.raises(VlkgeError, match="not found"):
        FeatureCache(tmp_path / "nowhere").load(["e0"])
    cache = FeatureCache(tmp_path / "cache")
    cache.update(encoder(parts), manifest, modalities=["text"])
    assert set(cache.load(["e0"])) == {"text"}
    with pytest.raises(VlkgeError, match="no image features"):
        cache.load(["e0"], modalities=["image"])
    assert json.loads(cache.metadata_path("text").read_text())["entities"] == 6


def test_text_only_encoder_refuses_images(parts, manifest, tmp_path):
    model, tokenizer, _ = parts
    text_only = HFEncoder(model, tokenizer, None)
    assert text_only.modalities == ("text",)
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(VlkgeError, match="no image tower"):
        cache.update(text_only, manifest, modalities=["image"])
    assert set(cache.update(text_only, manifest)) == {"text"}


def test_concurrent_writers_are_refused(parts, manifest, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    cache.folder.mkdir()
    with cache.lock():
        with pytest.raises(VlkgeError, match="another vlkge encode"):
            FeatureCache(tmp_path / "cache", lock_timeout=0).update(encoder(parts), manifest)
    assert cache.update(encoder(parts), manifest, modalities=["text"])["text"].encoded == 6


def test_prompt_features_by_text_and_encoder(tmp_path):
    cache, encoder = FeatureCache(tmp_path / "features"), LetterColourEncoder()
    assert cache.prompts(encoder) == {}
    texts = ["a cat", "a dog"]
    first = dict(zip(texts, encoder.encode_texts(texts), strict=True))
    cache.add_prompts(encoder, first)
    cache.add_prompts(encoder, {"x" * 10_000: encoder.encode_texts(["x"])[0]})  # any text
    assert len(cache.shards("prompts")) == 2
    stored = cache.prompts(encoder)
    assert set(stored) == {"a cat", "a dog", "x" * 10_000}
    assert torch.equal(stored["a dog"], first["a dog"])
    assert not cache.shards("prompts") and cache.features_path("prompts").is_file()  # merged
    assert cache.prompts(encoder).keys() == stored.keys()
    assert cache.prompts(LetterColourEncoder(seed=1)) == {}  # other weights: nothing reused
    assert cache.modalities() == []  # the prompt table is no modality


def test_check_encoder_names_the_encoder_that_wrote_the_features(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    assert cache.check_encoder("text", LetterColourEncoder()) is None  # nothing cached yet
    manifest = EntityManifest(texts={"e0": ["a cat"], "e1": ["a dog"]})
    cache.update(LetterColourEncoder(), manifest, modalities=["text"])
    meta = cache.check_encoder("text", LetterColourEncoder())
    assert meta["encoder"] == "stub-vl"
    other = LetterColourEncoder(seed=1)
    with pytest.raises(VlkgeError) as info:
        cache.check_encoder("text", other, "; try another")
    message = str(info.value)
    assert message.startswith(f"{cache.folder}: encoder stub-vl is not the one that wrote")
    assert "written by encoder stub-vl (weights differ); try another" in message


def test_check_encoder_lets_imported_features_pass(tmp_path):
    from vlkge.encoders.cache import imported
    from vlkge.encoders.precomputed import PrecomputedFeatures

    cache = FeatureCache(tmp_path / "cache")
    source = PrecomputedFeatures(tmp_path / "v.npy", {"e0": torch.ones(3)}, {"e0": 1}, 3, "f")
    cache.import_features("image", source)
    meta = cache.check_encoder("image", LetterColourEncoder())
    assert imported(meta) and not imported(cache.metadata("image") | {"preprocessing": "x"})
