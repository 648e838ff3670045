"""User-facing errors: one line, naming the file and line where the input went wrong.

The CLI prints ``VlkgeError`` messages without a traceback and exits non-zero; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import signal
from os import PathLike

#: characters of a user's value that an error line shows (ids, relation names, config values)
ECHO_LIMIT = 200


def echo(value: object, quote: bool = True, limit: int = ECHO_LIMIT) -> str:
    """``value`` as an error line shows it: its ``repr`` (``quote``) or its text on one line,
    cut to ``limit`` characters ending in an ellipsis, since a user's value can be any length
    (a 10,000-character id) and an error must stay one readable line."""
    try:
        text = repr(value) if quote else " ".join(str(value).split())
    except ValueError:  # holds an int past Python's 4,300-digit conversion limit
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


class VlkgeError(Exception):
    """An error caused by the user's input or configuration, not by vlkge itself."""


class DataError(VlkgeError):
    """Bad content in a data file; the message starts with ``file:line:``."""

    def __init__(self, path: str | PathLike | None, line: int | None, message: str):
        where = str(path) if path is not None else "<input>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class ConfigError(VlkgeError):
    """A configuration key or value that cannot be used."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or another signal, ``signum``) stopped a run; the message says what was saved
    and how to resume.

    A ``KeyboardInterrupt`` (not a ``VlkgeError``) so that callers of the Python API see the
    interruption they asked for; the CLI prints the message and exits with status
    128 + ``signum`` (130 for Ctrl-C, 143 for SIGTERM).
    """

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = signum
