"""What a request to ``vlkge serve`` may carry: the limits, the errors that name their HTTP
status, and uploaded images checked before they are decoded (docs/serving.md, "Safety")."""

from __future__ import annotations

import io
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vlkge.encoders.images import MAX_PIXELS
from vlkge.errors import VlkgeError, echo
from vlkge.untrusted import check_regular_file

DEFAULT_K = 10  # answers, neighbours or search hits when a request names no number
#: image formats served from a dataset's manifest, with their media types (no SVG: it runs
#: scripts in the page's origin)
SERVED_FORMATS = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
}


@dataclass(frozen=True)
class Limits:
    """Caps on one request; the command line's defaults are these."""

    max_upload_bytes: int = 8 * 2**20  # a whole request body (image and form fields)
    max_pixels: int = MAX_PIXELS // 4  # an uploaded image, read from its header
    max_text_chars: int = 10_000  # a new entity's text
    max_k: int = 1_000  # answers or neighbours in one response
    max_query_chars: int = 200  # a search string

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 1:
                raise VlkgeError(f"{name.replace('_', ' ')} must be positive, not {echo(value)}")


class NotFound(VlkgeError):
    """An unknown run, entity or relation (HTTP 404)."""


class TooLarge(VlkgeError):
    """An upload past :class:`Limits` (HTTP 413)."""


def check_k(k: int, limits: Limits) -> int:
    if not 1 <= k <= limits.max_k:
        raise VlkgeError(f"k must be between 1 and {limits.max_k}, not {echo(k)}")
    return k


def check_query(query: str, limits: Limits) -> str:
    if len(query) > limits.max_query_chars:
        raise TooLarge(
            f"the search has {len(query):,} characters, more than {limits.max_query_chars}"
        )
    return query


def check_text(text: str | None, limits: Limits) -> str | None:
    """A new entity's text, or ``None`` when none was given; blank or too long is refused."""
    if text is None or text == "":
        return None
    if len(text) > limits.max_text_chars:
        raise TooLarge(
            f"the text has {len(text):,} characters, more than {limits.max_text_chars:,}"
        )
    if not text.strip():
        raise VlkgeError("the text is blank: give the new entity's text")
    return text


def check_image(data: bytes, limits: Limits) -> str:
    """Decode ``data`` once to prove it is a whole image within ``limits.max_pixels`` (read
    from its header before any pixel is decoded); returns PIL's format name."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise VlkgeError("the uploaded image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's own bomb warning: the check below decides
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > limits.max_pixels:
                    raise TooLarge(
                        f"the image is {width} x {height} pixels, more than {limits.max_pixels:,}"
                    )
                image.load()
                return str(image.format)
    except Image.DecompressionBombError:
        raise TooLarge("the image declares more pixels than PIL ever decodes") from None
    except UnidentifiedImageError:
        raise VlkgeError("the upload is not an image PIL can read") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt pixel data
        raise VlkgeError(f"the image is corrupt ({echo(exc, quote=False)})") from None


@contextmanager
def image_file(data: bytes | None, limits: Limits) -> Iterator[Path | None]:
    """The checked upload as a temporary file (never in a run folder) while the block runs,
    since ``vlkge predict --new-image`` reads a path; ``None`` when nothing was uploaded."""
    if data is None:
        yield None
        return
    suffix = "." + check_image(data, limits).lower()
    with tempfile.TemporaryDirectory(prefix="vlkge-upload-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        yield path


def media_type(path: str) -> str | None:
    """The media type of a dataset image, read from its header; ``None`` for a missing,
    unreadable or unknown-format file (nothing of it is ever sent)."""
    from PIL import Image

    try:
        check_regular_file(path)
        with Image.open(path) as image:
            return SERVED_FORMATS.get(str(image.format))
    except Exception:  # missing, not a regular file, not an image: PIL raises many types
        return None
