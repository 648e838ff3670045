"""Images decoded in worker processes; missing and corrupt files counted, never fatal."""

from __future__ import annotations

import torch
from conftest import tiny_clip

from vlkge.encoders.hf import HFEncoder
from vlkge.encoders.images import encode_entity_images


def test_images_averaged_per_entity_with_failures(tmp_path, write_images):
    model, tokenizer, processor = tiny_clip()
    encoder = HFEncoder(model, tokenizer, processor, batch_size=2)
    png = write_images(3, "PNG")
    jpg = write_images(2, "JPEG", start=10)
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    missing = tmp_path / "nowhere.png"
    items = [
        ("both", [str(png[0]), str(jpg[0]), str(missing)]),
        ("broken", [str(corrupt), str(empty)]),
        ("one", [str(png[1])]),
        ("mixed", [str(jpg[1]), str(corrupt), str(png[2])]),
    ]
    for workers in (0, 2):
        out = list(encode_entity_images(encoder, items, batch_size=2, workers=workers))
        assert [r.entity for r in out] == ["both", "broken", "one", "mixed"]
        both, broken, one, mixed = out
        from PIL import Image

        def expected(paths):
            return encoder.encode_images([Image.open(p).convert("RGB") for p in paths]).mean(0)

        torch.testing.assert_close(both.feature, expected([png[0], jpg[0]]), atol=1e-5, rtol=1e-5)
        assert both.used == 2 and both.failures == [(str(missing), "missing")]
        assert broken.feature is None and broken.used == 0 and len(broken.failures) == 2
        assert all("corrupt or unreadable" in reason for _, reason in broken.failures)
        torch.testing.assert_close(one.feature, expected([png[1]]), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mixed.feature, expected([jpg[1], png[2]]), atol=1e-5, rtol=1e-5)
        assert mixed.used == 2 and [p for p, _ in mixed.failures] == [str(corrupt)]


def test_grey_and_rgba_images_are_converted(tmp_path):
    from PIL import Image

    model, tokenizer, processor = tiny_clip()
    encoder = HFEncoder(model, tokenizer, processor)
    Image.new("L", (20, 30), 128).save(tmp_path / "grey.png")
    Image.new("RGBA", (30, 20), (10, 200, 30, 100)).save(tmp_path / "alpha.png")
    (out,) = encode_entity_images(
        encoder, [("e", [str(tmp_path / "grey.png"), str(tmp_path / "alpha.png")])]
    )
    assert out.used == 2 and not out.failures and out.feature.shape == (24,)
