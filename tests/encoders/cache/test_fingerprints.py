"""Input fingerprints: texts by content and order, images by their files' bytes in any order."""

from __future__ import annotations

from vlkge.data.manifest import EntityManifest
from vlkge.encoders.cache.fingerprints import (
    entity_inputs,
    file_digest,
    images_fingerprint,
    text_fingerprint,
)


def test_text_fingerprints_follow_content_and_order():
    assert text_fingerprint(["a", "b"]) == text_fingerprint(["a", "b"])
    assert text_fingerprint(["a", "b"]) != text_fingerprint(["b", "a"])
    assert text_fingerprint(["ab"]) != text_fingerprint(["a", "b"])


def test_image_fingerprints_follow_bytes_not_order(tmp_path):
    one, two = tmp_path / "1.png", tmp_path / "2.png"
    one.write_bytes(b"one")
    two.write_bytes(b"two")
    digests = [file_digest(one), file_digest(two)]
    assert images_fingerprint(digests) == images_fingerprint(reversed(digests))
    before = images_fingerprint(digests)
    two.write_bytes(b"changed")
    assert images_fingerprint([file_digest(one), file_digest(two)]) != before
    assert file_digest(tmp_path / "gone.png") == f"missing:{tmp_path / 'gone.png'}"
    assert file_digest(tmp_path).startswith("unreadable:")  # a folder, never opened


def test_entity_inputs_keeps_entities_with_the_modality(tmp_path):
    manifest = EntityManifest(texts={"a": ["x"], "c": ["y", "z"]})
    (tmp_path / "b.png").write_bytes(b"b")
    manifest.add_image("b", str(tmp_path / "b.png"))
    items, fingerprints = entity_inputs(manifest, ["a", "b", "c", "d"], "text")
    assert items == [("a", ["x"]), ("c", ["y", "z"])]
    assert fingerprints == {"a": text_fingerprint(["x"]), "c": text_fingerprint(["y", "z"])}
    items, fingerprints = entity_inputs(manifest, ["a", "b"], "image")
    assert items == [("b", [str(tmp_path / "b.png")])]
    assert fingerprints == {"b": images_fingerprint([file_digest(tmp_path / "b.png")])}
