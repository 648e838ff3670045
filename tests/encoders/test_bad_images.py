"""Missing, unreadable, truncated and huge images, and FIFOs: ``vlkge encode`` skips each one
and names it with its entity and reason; ``predict --new-image`` refuses it in one line."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from conftest import StubEncoder, random_image

import vlkge.encoders
from vlkge.cli import main
from vlkge.encoders.cache import FeatureCache
from vlkge.encoders.images import MAX_PIXELS, ImageTooLarge, failure_reason, load_image


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels but holds almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_huge_images_are_refused_from_their_header(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_header(10_000, 10_000))  # 1e8 pixels: above the limit
    assert 10_000 * 10_000 > MAX_PIXELS
    with pytest.raises(ImageTooLarge) as info:
        load_image(str(path), lambda image: image)
    assert failure_reason(info.value) == "too large (10000 x 10000 pixels, more than 89,478,485)"
    path.write_bytes(png_header(30_000, 30_000))  # far above: PIL refuses it while opening
    with pytest.raises(Exception) as info:
        load_image(str(path), lambda image: image)
    assert failure_reason(info.value) == "too large (a decompression bomb)"


@pytest.fixture
def dataset(make_dataset, tmp_path) -> Path:
    """The toy graph with a good image for a and c, and a bad one for every entity."""
    data = make_dataset(tmp_path / "toy")
    pics = data / "pics"
    pics.mkdir()
    random_image(0).save(pics / "good.png")
    random_image(1).save(pics / "fine.jpg", quality=90)
    whole = (pics / "fine.jpg").read_bytes()
    (pics / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    (pics / "huge.png").write_bytes(png_header(10_000, 10_000))
    (pics / "folder.png").mkdir()
    (pics / "noise.png").write_bytes(b"not an image at all")
    rows = [
        "a\timage\tpics/good.png",
        "a\timage\tpics/folder.png",
        "b\timage\tpics/missing.png",
        "c\timage\tpics/fine.jpg",
        "c\timage\tpics/cut.jpg",
        "d\timage\tpics/huge.png",
        "d\timage\tpics/noise.png",
    ]
    (data / "manifest.tsv").write_text("\n".join(rows) + "\n")
    return data


def test_encode_skips_and_names_every_bad_image(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(vlkge.encoders, "build_encoder", lambda *a, **k: StubEncoder())
    out = tmp_path / "features"
    argv = ["encode", "--dataset", str(dataset), "--encoder", "stub", "--out", str(out)]
    assert main([*argv, "--modalities", "image", "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    pics = dataset / "pics"
    assert "image: 4 entities, 4 encoded, 0 reused" in printed
    assert "5 images missing or unreadable in 4 entities; 2 entities without a usable image" in (
        printed
    )
    assert f"  a: {pics / 'folder.png'}: unreadable (IsADirectoryError)" in printed
    assert f"  b: {pics / 'missing.png'}: missing" in printed
    assert f"  c: {pics / 'cut.jpg'}: corrupt or unreadable (OSError: image file is truncated" in (
        printed
    )
    assert f"  d: {pics / 'huge.png'}: too large (10000 x 10000 pixels" in printed
    assert "(+1 more)" in printed  # d's second image, not an image at all
    failed = FeatureCache(out).metadata("image")["failed_inputs"]
    assert failed["d"][1] == [str(pics / "noise.png"), failed["d"][1][1]]
    assert failed["d"][1][1].startswith("corrupt or unreadable (UnidentifiedImageError")
    loaded = FeatureCache(out).load(["a", "b", "c", "d"])["image"]
    assert loaded.mask.tolist() == [True, False, True, False]


def test_encode_skips_an_image_that_is_a_fifo(make_dataset, tmp_path, monkeypatch, capsys, fifo):
    """Neither the input fingerprint nor the image loader opens it (either would wait forever
    for a writer)."""
    monkeypatch.setattr(vlkge.encoders, "build_encoder", lambda *a, **k: StubEncoder())
    data = make_dataset(tmp_path / "toy")
    random_image(0).save(data / "good.png")
    rows = ["a\timage\tgood.png", f"a\timage\t{fifo.path}", f"b\timage\t{fifo.path}"]
    (data / "manifest.tsv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "features"
    argv = ["encode", "--dataset", str(data), "--encoder", "stub", "--out", str(out)]
    assert main([*argv, "--modalities", "image", "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert not fifo.opened
    assert "2 images missing or unreadable in 2 entities; 1 entity without a usable image" in (
        printed
    )
    assert f"  a: {fifo.path}: unreadable (not a regular file)" in printed
    assert f"  b: {fifo.path}: unreadable (not a regular file)" in printed
    assert FeatureCache(out).load(["a", "b"])["image"].mask.tolist() == [True, False]
