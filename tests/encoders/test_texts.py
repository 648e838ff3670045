"""Entity texts encoded a chunk of entities per call and averaged per entity, in order."""

from __future__ import annotations

import torch
from fakes import LetterColourEncoder

from vlkge.encoders.texts import encode_entity_texts


class Calls(LetterColourEncoder):
    def __init__(self):
        super().__init__()
        self.calls: list[int] = []

    def encode_texts(self, texts):
        self.calls.append(len(texts))
        return super().encode_texts(texts)


def test_texts_averaged_per_entity_a_chunk_at_a_time():
    encoder = Calls()
    items = [("a", ["x", "yy"]), ("b", ["zzz"]), ("c", ["x", "x", "q"])]
    out = list(encode_entity_texts(encoder, items, chunk_size=2))
    assert [e.entity for e in out] == ["a", "b", "c"]
    assert [e.used for e in out] == [2, 1, 3] and all(not e.failures for e in out)
    assert encoder.calls == [3, 3]  # two entities' texts in the first call, one's in the second
    for done, (_, texts) in zip(out, items, strict=True):
        expected = LetterColourEncoder().encode_texts(texts).mean(0)
        torch.testing.assert_close(done.feature, expected)
