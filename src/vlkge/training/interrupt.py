"""Ctrl-C or SIGTERM during training: stop at the next safe point instead of in the middle of a
batch.

A ``KeyboardInterrupt`` raised at an arbitrary bytecode can leave the model half-updated (an
optimiser step interrupted between two parameters), and a checkpoint of that state would not
resume exactly. So while training, the first SIGINT (Ctrl-C) or SIGTERM (a scheduler,
``docker stop``, ``timeout``) only sets a flag; the trainer calls :meth:`StopRequest.check`
after each batch and after each epoch, where the model, optimiser and generator agree, and saves
a checkpoint there. A second signal stops at once, without saving. Under torchrun every rank stops at the same batch
(:meth:`StopRequest.check`). The CLI exits with status
128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a process the
signal ended.
"""

from __future__ import annotations

import logging
import signal
import threading

from vlkge import distributed

log = logging.getLogger(__name__)

NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class StopRequest:
    """The SIGINT and SIGTERM handler of a training loop (installed only in the main thread)."""

    def __init__(self) -> None:
        self.signum: int | None = None  # the first signal: stop at the next safe point
        self.forced = False  # a second signal: stopped wherever it was, state not consistent
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> None:
        self.signum, self.forced = None, False
        if threading.current_thread() is threading.main_thread():
            for signum in NAMES:
                self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            if previous is not None:  # None: a handler not installed from Python
                signal.signal(signum, previous)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            self.forced = True
            raise KeyboardInterrupt
        self.signum = signum
        log.warning(
            "%s: stopping after the current batch (or validation) and saving a checkpoint; "
            "a second signal (Ctrl-C again) stops at once without saving",
            NAMES[signum],
        )

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` at a safe point if a stop was requested. Under torchrun
        the ranks agree first (any rank's request stops all of them at the same batch), so
        that none waits forever in a collective of the next batch and a checkpoint saved
        there is consistent across ranks."""
        if distributed.any_rank(self.requested) and not self.requested:
            self.signum = signal.SIGTERM  # another rank's signal
        if self.requested:
            raise KeyboardInterrupt
