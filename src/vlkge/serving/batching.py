"""Concurrent requests' work done in one batch (docs/serving.md, "Speed").

- :class:`Combiner`, for work on the thread pool: while one thread encodes, the requests that
  arrive queue up, and the next thread to get the turn encodes all of them at once. A batch of
  8 MiniLM texts costs about half of 8 single encodings on a CPU core.
- :class:`LoopBatcher`, for work on the event loop: the top-k queries whose requests were read
  in the same turn of the loop are scored in one matrix product, which reads the entity table
  once instead of once per query (a matrix-vector product is bound by memory).

Neither waits for company: a request alone is computed at once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def _results(work: Callable[[list], list], items: list) -> list:
    """``work(items)``, refused unless it gives one result per item."""
    results = work(items)
    if len(results) != len(items):
        raise RuntimeError(f"work returned {len(results)} results for {len(items)} items")
    return results


@dataclass
class _Slot(Generic[Item, Result]):
    item: Item
    result: Result | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class Combiner(Generic[Item, Result]):
    """``combiner(item)`` returns ``work([..., item, ...])[its position]``: ``work`` maps a
    list of items to a list of results and runs on one thread at a time, on every item queued
    when its turn comes (at most ``max_batch``). An exception in ``work`` reaches every caller
    of that batch, so items are checked before they are queued."""

    work: Callable[[list[Item]], list[Result]]
    max_batch: int = 32
    _pending: list[_Slot] = field(default_factory=list, repr=False)
    _queue: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _turn: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, item: Item) -> Result:
        slot: _Slot = _Slot(item)
        with self._queue:
            self._pending.append(slot)
        while not slot.done:
            with self._turn:
                if slot.done:  # an earlier turn took it
                    break
                with self._queue:
                    batch = self._pending[: self.max_batch]
                    del self._pending[: self.max_batch]
                self._run(batch)
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _run(self, batch: list[_Slot]) -> None:
        try:
            results = _results(self.work, [slot.item for slot in batch])
            for slot, result in zip(batch, results, strict=True):
                slot.result = result
        except BaseException as exc:  # every waiting caller hears of it, not only this one
            for slot in batch:
                slot.error = exc
        finally:
            for slot in batch:
                slot.done = True


@dataclass
class LoopBatcher(Generic[Item, Result]):
    """``await batcher(item)`` returns ``work([..., item, ...])[its position]``: the items
    queued by coroutines before the loop runs the batch (scheduled by the first of them with
    ``call_soon``, so after the requests already read) are computed in one ``work`` call, on
    the loop's thread."""

    work: Callable[[list[Item]], list[Result]]
    _pending: list[tuple[Item, asyncio.Future]] = field(default_factory=list, repr=False)

    async def __call__(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) == 1:
            loop.call_soon(self._run)
        return await future

    def _run(self) -> None:
        batch, self._pending = self._pending, []
        try:
            results = _results(self.work, [item for item, _ in batch])
        except Exception as exc:  # every waiting request hears of it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # a request cancelled meanwhile (its client went away)
                future.set_result(result)
