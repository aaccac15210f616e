import asyncio
from collections.abc import Sequence

import pytest

from bot.batching import MicroBatcher


async def test_concurrent_items_share_batches_and_keep_their_results() -> None:
    calls: list[list[int]] = []

    async def double(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        await asyncio.sleep(0.01)
        return [2 * i for i in items]

    batcher = MicroBatcher(double, max_batch=50)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(120)))
    assert results == [2 * i for i in range(120)]
    # Everything submitted in the same tick goes in as few batches as max_batch allows, in order.
    assert [len(c) for c in calls] == [50, 50, 20]
    assert [i for c in calls for i in c] == list(range(120))
    assert await batcher.submit(7) == 14  # a lone later request runs at once, alone
    assert calls[-1] == [7]


async def test_a_failing_batch_fails_only_its_items() -> None:
    async def flaky(items: Sequence[str]) -> list[str]:
        if "bad" in items:
            raise RuntimeError("model exploded")
        return [item.upper() for item in items]

    batcher = MicroBatcher(flaky)
    with pytest.raises(RuntimeError, match="exploded"):
        await batcher.submit("bad")
    assert await batcher.submit("ok") == "OK"


async def test_an_item_at_fault_fails_alone_when_its_batch_is_retried_item_by_item() -> None:
    calls: list[list[str]] = []

    async def store(items: Sequence[str]) -> list[str]:
        calls.append(list(items))
        await asyncio.sleep(0.01)
        if any(len(item) > 5 for item in items):
            raise ValueError("value too long")
        if "down" in items:
            raise ConnectionError("database unreachable")
        return [item.upper() for item in items]

    batcher = MicroBatcher(store, retry_alone=lambda error: isinstance(error, ValueError))
    results = await asyncio.gather(*(batcher.submit(item) for item in ("a", "toolong", "b")), return_exceptions=True)
    assert results[0] == "A" and results[2] == "B"
    assert isinstance(results[1], ValueError)
    assert calls == [["a", "toolong", "b"], ["a"], ["toolong"], ["b"]]

    # An error no item's data can cause fails the whole batch at once, without a retry per item.
    calls.clear()
    results = await asyncio.gather(*(batcher.submit(item) for item in ("c", "down", "d")), return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)
    assert calls == [["c", "down", "d"]]


async def test_a_lone_item_that_fails_is_not_tried_again_alone() -> None:
    calls: list[list[str]] = []

    async def store(items: Sequence[str]) -> list[str]:
        calls.append(list(items))
        raise ValueError("value too long")

    batcher = MicroBatcher(store, retry_alone=lambda error: isinstance(error, ValueError))
    with pytest.raises(ValueError):
        await batcher.submit("toolong")
    assert calls == [["toolong"]]  # it was alone already: a retry would only fail the same, twice as slowly


async def test_a_request_cancelled_while_its_batch_ran_is_not_retried() -> None:
    calls: list[list[str]] = []

    async def store(items: Sequence[str]) -> list[str]:
        calls.append(list(items))
        await asyncio.sleep(0.02)
        if len(items) > 1:
            raise ValueError("one of them is at fault")
        return [item.upper() for item in items]

    batcher = MicroBatcher(store, retry_alone=lambda error: isinstance(error, ValueError))
    gone, kept = asyncio.ensure_future(batcher.submit("gone")), asyncio.ensure_future(batcher.submit("kept"))
    await asyncio.sleep(0.01)  # both are in the running batch
    gone.cancel()
    assert await kept == "KEPT"
    assert calls == [["gone", "kept"], ["kept"]]


async def test_at_most_256_items_go_in_one_batch_by_default() -> None:
    sizes: list[int] = []

    async def echo(items: Sequence[int]) -> list[int]:
        sizes.append(len(items))
        return list(items)

    batcher = MicroBatcher(echo)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(300))) == list(range(300))
    assert sizes == [256, 44]  # one transaction, one forward pass, never unbounded
