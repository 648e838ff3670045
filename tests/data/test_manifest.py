"""The entity manifest: texts and images per entity, on disk and as availability flags."""

from __future__ import annotations

import pytest

from vlkge.data.manifest import EntityManifest, read_keyed_texts
from vlkge.errors import DataError


def sample(root) -> EntityManifest:
    manifest = EntityManifest()
    manifest.add_text("a", "the first letter")
    manifest.add_text("a", "alpha, in Greek")
    manifest.add_image("a", str(root / "img" / "a1.jpg"))
    manifest.add_image("b", str(root / "img" / "b1.jpg"))
    manifest.add_image("b", str(root / "img" / "b2.jpg"))
    manifest.add_text("c", "Zürich 東京")
    return manifest


def test_round_trip(tmp_path):
    manifest = sample(tmp_path)
    path = tmp_path / "manifest.tsv"
    manifest.write(path)
    again = EntityManifest.read(path)
    assert again.texts == manifest.texts
    assert again.images == manifest.images
    assert again == manifest


def test_write_flattens_multiline_text(tmp_path):
    manifest = EntityManifest()
    manifest.add_text("a", "two\nlines\tand  a tab")
    path = tmp_path / "m.tsv"
    manifest.write(path)
    assert EntityManifest.read(path).texts == {"a": ["two lines and a tab"]}


def test_entities_first_seen_order(tmp_path):
    assert sample(tmp_path).entities() == ["a", "c", "b"]  # texts first, then image-only ones


def test_relative_images_resolve_against_manifest_folder(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "manifest.tsv").write_text(
        "# comment\n\nx\timage\timages/x.jpg\ny\timage\t/abs/y.png\nx\ttext\t an x \n",
        encoding="utf-8",
    )
    manifest = EntityManifest.read(folder / "manifest.tsv")
    assert manifest.images == {"x": [str(folder / "images" / "x.jpg")], "y": ["/abs/y.png"]}
    assert manifest.texts == {"x": ["an x"]}


def test_availability_and_coverage(tmp_path):
    manifest = sample(tmp_path)
    entities = ["a", "b", "c", "d"]  # d has nothing
    flags = manifest.availability(entities)
    assert flags["text"].tolist() == [True, False, True, False]
    assert flags["image"].tolist() == [True, True, False, False]
    assert flags["text"].dtype == flags["image"].dtype
    assert manifest.coverage(entities) == {"both": 1, "text_only": 1, "image_only": 1, "neither": 1}
    assert manifest.coverage([]) == {"both": 0, "text_only": 0, "image_only": 0, "neither": 0}


def test_empty_list_counts_as_unavailable():
    manifest = EntityManifest(texts={"a": []}, images={})
    assert manifest.availability(["a"])["text"].tolist() == [False]


@pytest.mark.parametrize(
    "row, message",
    [
        ("a\ttext", "columns"),
        ("a\ttext\tx\ty", "columns"),
        ("\ttext\thello", "blank entity"),
        ("a\tvideo\tclip.mp4", "kind must be text or image"),
        ("a\ttext\t  ", "empty text"),
        ("a\timage\t", "empty image"),
    ],
)
def test_bad_rows(tmp_path, row, message):
    path = tmp_path / "manifest.tsv"
    path.write_text(f"ok\ttext\tfine\n{row}\n", encoding="utf-8")
    with pytest.raises(DataError, match=message) as info:
        EntityManifest.read(path)
    assert str(info.value).startswith(f"{path}:2:")


def test_missing_manifest(tmp_path):
    with pytest.raises(DataError, match="not found"):
        EntityManifest.read(tmp_path / "none.tsv")


def test_read_keyed_texts(tmp_path):
    path = tmp_path / "entity2text.txt"
    path.write_text("n1\tdog, a canine\twith a tab\nn2\t\n\nn3\tcat\r\n", encoding="utf-8")
    assert read_keyed_texts(path) == {"n1": "dog, a canine\twith a tab", "n3": "cat"}


def test_read_keyed_texts_bad_row(tmp_path):
    path = tmp_path / "entity2text.txt"
    path.write_text("n1\tdog\nno tab here\n", encoding="utf-8")
    with pytest.raises(DataError, match="entity<TAB>text") as info:
        read_keyed_texts(path)
    assert str(info.value).startswith(f"{path}:2:")


def test_text_template_rewrites_texts_with_names():
    from vlkge.errors import ConfigError

    manifest = EntityManifest(texts={"a": ["first", "second"], "b": ["only"]}, images={"a": ["x"]})
    assert manifest.with_text_template("{text}", {}) is manifest
    named = manifest.with_text_template("{name}: {text}", {"a": "Alpha"})
    assert named.texts == {"a": ["Alpha: first", "Alpha: second"], "b": ["b: only"]}
    assert named.images == manifest.images and manifest.texts["a"] == ["first", "second"]
    with pytest.raises(ConfigError, match="only {text} and {name}"):
        manifest.with_text_template("{gloss}", {})


def test_text_templates_get_their_own_cache_folder():
    from vlkge.encoders.cache import default_cache_dir

    plain = default_cache_dir("wn9-img", "minilm")
    named = default_cache_dir("wn9-img", "minilm", "{name}: {text}")
    assert plain.name == "minilm" and named.parent == plain.parent
    assert named.name.startswith("minilm-text-") and named != plain
