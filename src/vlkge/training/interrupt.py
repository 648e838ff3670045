"""Ctrl-C during training: stop at the next safe point instead of in the middle of a batch.

A ``KeyboardInterrupt`` raised at an arbitrary bytecode can leave the model half-updated (an
optimiser step interrupted between two parameters), and a checkpoint of that state would not
resume exactly. So while training, the first SIGINT only sets a flag; the trainer calls
:meth:`StopRequest.check` after each batch and after each epoch, where the model, optimiser and
generator agree, and saves a checkpoint there. A second Ctrl-C stops at once, without saving.
"""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)


class StopRequest:
    """The SIGINT handler of a training loop (installed only in the main thread)."""

    def __init__(self) -> None:
        self.requested = False  # the first Ctrl-C: stop at the next safe point
        self.forced = False  # a second Ctrl-C: stopped wherever it was, state not consistent
        self._previous = None

    def install(self) -> None:
        self.requested = self.forced = False
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.requested = True
        log.warning(
            "Ctrl-C: stopping after the current batch (or validation) and saving a "
            "checkpoint; press Ctrl-C again to stop at once without saving"
        )

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` at a safe point if a stop was requested."""
        if self.requested:
            raise KeyboardInterrupt
