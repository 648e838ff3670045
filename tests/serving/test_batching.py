import threading
import time

import pytest

from vlkge.serving.batching import Combiner


def test_each_caller_gets_its_own_result_and_waiting_calls_share_a_batch():
    batches = []
    started = threading.Event()

    def work(items):
        batches.append(list(items))
        started.set()
        if len(batches) == 1:  # the others queue meanwhile (waited for: a loaded machine's
            deadline = time.monotonic() + 10  # threads may take long to start)
            while len(combiner._pending) < 6 and time.monotonic() < deadline:
                time.sleep(0.005)
        return [item * 10 for item in items]

    combiner = Combiner(work, max_batch=4)
    results = {}

    def call(item):
        results[item] = combiner(item)

    first = threading.Thread(target=call, args=(0,))
    first.start()
    started.wait(5)
    others = [threading.Thread(target=call, args=(i,)) for i in range(1, 7)]
    for thread in others:
        thread.start()
    for thread in [first, *others]:
        thread.join(10)
    assert results == {i: i * 10 for i in range(7)}
    assert sorted(i for batch in batches for i in batch) == list(range(7))  # each item once
    assert batches[0] == [0]
    assert max(len(batch) for batch in batches) == 4  # at most max_batch, and some batching
    assert len(batches) <= 3


def test_an_error_in_the_work_reaches_every_caller_of_that_batch():
    def work(items):
        raise ValueError("encoder broke")

    combiner = Combiner(work)
    errors = []

    def call(item):
        try:
            combiner(item)
        except ValueError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == ["encoder broke"] * 3


def test_a_wrong_number_of_results_is_an_error_not_a_mix_up():
    combiner = Combiner(lambda items: [])
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        combiner("x")


def test_the_loop_batcher_computes_the_queries_of_one_turn_in_one_call():
    import asyncio

    from vlkge.serving.batching import LoopBatcher

    calls = []

    def work(items):
        calls.append(list(items))
        return [item + 1 for item in items]

    batcher = LoopBatcher(work)

    async def main():
        alone = await batcher(0)
        together = await asyncio.gather(*(batcher(i) for i in range(1, 6)))
        return alone, together

    alone, together = asyncio.run(main())
    assert alone == 1 and together == [2, 3, 4, 5, 6]
    assert calls == [[0], [1, 2, 3, 4, 5]]


def test_an_error_in_the_loop_batchers_work_reaches_every_query():
    import asyncio

    from vlkge.serving.batching import LoopBatcher

    def work(items):
        raise ValueError("no table")

    batcher = LoopBatcher(work)

    async def main():
        return await asyncio.gather(*(batcher(i) for i in range(3)), return_exceptions=True)

    assert [str(error) for error in asyncio.run(main())] == ["no table"] * 3
