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
