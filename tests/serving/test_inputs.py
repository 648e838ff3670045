"""What a request may carry: limits, texts, uploaded images checked before decoding."""

from __future__ import annotations

import pytest

from serving.conftest import png
from vlkge.errors import VlkgeError
from vlkge.serving.inputs import (
    Limits,
    TooLarge,
    check_image,
    check_text,
    image_file,
    media_type,
)


def test_limits_are_positive():
    assert Limits().max_pixels > 1_000_000
    with pytest.raises(VlkgeError, match="max upload bytes must be positive, not 0"):
        Limits(max_upload_bytes=0)


def test_texts():
    limits = Limits(max_text_chars=5)
    assert check_text(None, limits) is None and check_text("", limits) is None
    assert check_text("abc", limits) == "abc"
    with pytest.raises(VlkgeError, match="blank"):
        check_text("  ", limits)
    with pytest.raises(TooLarge, match="6 characters, more than 5"):
        check_text("abcdef", limits)


def test_images_are_checked_before_they_are_decoded():
    limits = Limits(max_pixels=100)
    assert check_image(png(size=(10, 10)), limits) == "PNG"
    with pytest.raises(TooLarge, match="11 x 10 pixels, more than 100"):
        check_image(png(size=(11, 10)), limits)
    with pytest.raises(VlkgeError, match="not an image"):
        check_image(b"GIF89a nothing else", limits)


def test_an_upload_is_a_temporary_file_while_it_is_used():
    with image_file(png(), Limits()) as path:
        assert path.suffix == ".png" and path.read_bytes() == png()
        folder = path.parent
    assert not folder.exists()
    with image_file(None, Limits()) as path:
        assert path is None


def test_only_raster_images_are_served(tmp_path):
    (tmp_path / "a.png").write_bytes(png())
    assert media_type(str(tmp_path / "a.png")) == "image/png"
    (tmp_path / "a.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>')
    assert media_type(str(tmp_path / "a.svg")) is None
    assert media_type(str(tmp_path / "missing.png")) is None
