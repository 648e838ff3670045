"""transformers CLIP / BLIP / SigLIP encoders equal the models' own feature functions."""

from __future__ import annotations

import pickle

import pytest
import torch
from conftest import random_image, tiny_blip, tiny_clip, tiny_siglip

from vlkge.encoders import build_encoder, guess_kind
from vlkge.encoders.hf import HFEncoder, _features
from vlkge.errors import VlkgeError

TEXTS = [
    "a domestic cat",
    "a large steam locomotive with many wheels",
    "x",
    "the brass instrument played in jazz bands, " * 6,  # longer than max_position_embeddings
]
TOL = dict(atol=1e-5, rtol=1e-5)


def images(n=3):
    return [random_image(i, size=(41 + 7 * i, 37)) for i in range(n)]


def reference_text(model, tokenizer, texts, **kwargs):
    batch = tokenizer(texts, truncation=True, return_tensors="pt", **kwargs)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}
    with torch.no_grad():
        return _features(model.get_text_features(**inputs))


def reference_image(model, processor, pics):
    pixels = processor(images=pics, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        return _features(model.get_image_features(pixel_values=pixels))


def test_clip_features_equal_get_features():
    model, tokenizer, processor = tiny_clip()
    encoder = HFEncoder(model, tokenizer, processor, name="tiny-clip", batch_size=3)
    assert encoder.text_width == 24 and encoder.image_width == 24
    expected = reference_text(model, tokenizer, TEXTS, padding=True, max_length=40)
    assert isinstance(expected, torch.Tensor) and expected.shape == (4, 24)
    torch.testing.assert_close(encoder.encode_texts(TEXTS), expected, **TOL)
    pics = images()
    torch.testing.assert_close(
        encoder.encode_images(pics), reference_image(model, processor, pics), **TOL
    )
    # one image at a time through the picklable worker transform gives the same rows
    transform = pickle.loads(pickle.dumps(encoder.image_transform()))
    pixels = torch.stack([transform(p) for p in pics])
    torch.testing.assert_close(
        encoder.encode_pixels(pixels), reference_image(model, processor, pics), **TOL
    )


def test_clip_loaded_from_folder(clip_dir):
    encoder = build_encoder(str(clip_dir))
    assert isinstance(encoder, HFEncoder) and guess_kind(str(clip_dir)) == "hf"
    model = type(encoder.model).from_pretrained(clip_dir).eval()
    _, tokenizer, processor = tiny_clip()
    torch.testing.assert_close(
        encoder.encode_texts(TEXTS[:2]),
        reference_text(model, tokenizer, TEXTS[:2], padding=True, max_length=40),
        **TOL,
    )
    pics = images(2)
    torch.testing.assert_close(
        encoder.encode_images(pics), reference_image(model, processor, pics), **TOL
    )
    # the weights fingerprint is stable across loads and changes with the weights
    again = build_encoder(str(clip_dir))
    assert encoder.fingerprint == again.fingerprint and len(encoder.fingerprint) == 64
    with torch.no_grad():
        again.model.text_projection.weight[0, 0] += 1e-3
    again.__dict__.pop("fingerprint")
    assert again.fingerprint != encoder.fingerprint
    assert "CLIPImageProcessorPil" in encoder.image_preprocessing
    assert "max_length=40" in encoder.text_preprocessing


def test_blip_features_equal_get_features():
    model, tokenizer, processor = tiny_blip()
    encoder = HFEncoder(model, tokenizer, processor, name="tiny-blip")
    assert encoder.text_width == 24 and encoder.image_width == 24
    torch.testing.assert_close(
        encoder.encode_texts(TEXTS),
        reference_text(model, tokenizer, TEXTS, padding=True, max_length=40),
        **TOL,
    )
    pics = images()
    torch.testing.assert_close(
        encoder.encode_images(pics), reference_image(model, processor, pics), **TOL
    )


def test_blip_retrieval_features_match_its_itc_scores():
    """BlipForImageTextRetrieval: normalised features reproduce use_itm_head=False scores."""
    model, tokenizer, processor = tiny_blip(retrieval=True)
    encoder = HFEncoder(model, tokenizer, processor, name="tiny-blip-itm")
    assert encoder.text_width == 20 and encoder.image_width == 20
    pics, texts = images(1), TEXTS[:1]
    text = encoder.encode_texts(texts)
    image = encoder.encode_images(pics)
    batch = tokenizer(texts, return_tensors="pt")
    pixels = processor(images=pics, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        scores = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values=pixels,
            use_itm_head=False,
        ).itm_score
    cosine = (
        torch.nn.functional.normalize(image, dim=-1) @ torch.nn.functional.normalize(text, dim=-1).T
    )
    torch.testing.assert_close(cosine, scores, **TOL)


def test_siglip_features_equal_get_features():
    model, tokenizer, processor = tiny_siglip()
    encoder = HFEncoder(model, tokenizer, processor, name="tiny-siglip")
    assert encoder.text_width == 32 and encoder.image_width == 32
    torch.testing.assert_close(
        encoder.encode_texts(TEXTS),
        reference_text(model, tokenizer, TEXTS, padding="max_length", max_length=16),
        **TOL,
    )
    pics = images(2)
    torch.testing.assert_close(
        encoder.encode_images(pics), reference_image(model, processor, pics), **TOL
    )


def test_blip_captioning_checkpoint_is_refused(tmp_path):
    """A checkpoint lacking the projections must not load with random ones."""
    import transformers

    model, tokenizer, processor = tiny_blip(retrieval=True)
    model.save_pretrained(tmp_path)
    transformers.BlipProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(
        tmp_path
    )
    config = tmp_path / "config.json"
    config.write_text(config.read_text().replace("BlipForImageTextRetrieval", "BlipModel"))
    with pytest.raises(VlkgeError, match="lacks .* weights"):
        build_encoder(str(tmp_path))


def test_unknown_model_name_is_one_line_error(tmp_path):
    with pytest.raises(VlkgeError, match="not a model folder"):
        build_encoder(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "clip"}')
    with pytest.raises(VlkgeError) as info:
        build_encoder(str(tmp_path))
    assert "\n" not in str(info.value)
