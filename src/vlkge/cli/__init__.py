"""The ``vlkge`` command line.

Errors caused by the user's input (``VlkgeError``) print one line and exit with status 2;
no traceback reaches the user for bad input. A run stopped by Ctrl-C or SIGTERM exits with
status 130 or 143.

The parser is in ``parser.py``; the commands, grouped by concern, in ``runs.py``,
``inference.py``, ``data.py`` and ``services.py`` (docs/architecture.md).
"""

from __future__ import annotations

import logging
import signal
import sys

from vlkge.cli.parser import build_parser
from vlkge.errors import VlkgeError

__all__ = ["build_parser", "main"]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        if not sys.stderr.isatty():
            return args.func(args)
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm():  # log lines above the progress bars, not through them
            return args.func(args)
    except VlkgeError as exc:
        print(f"vlkge: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Interrupted says what was saved, and which signal
        signum = getattr(exc, "signum", signal.SIGINT)
        word = "terminated" if signum == signal.SIGTERM else "interrupted"
        print(f"vlkge: {word}{f': {exc}' if str(exc) else ''}", file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except OSError as exc:  # a path that cannot be created, read or written
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"vlkge: error: {where}{exc.strerror or ' '.join(str(exc).split())}", file=sys.stderr)
        return 2
