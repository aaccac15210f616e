"""Micro-batching: concurrent requests share one call of a batch function.

Under load, a hundred users waiting for a guess cost one batched forward pass and one database
transaction instead of a hundred of each competing for the CPU and SQLite's single writer; when
idle, a lone request runs at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_BATCH = 256


class MicroBatcher(Generic[Item, Result]):
    """Queues items while a batch runs, then hands the queue to ``run_batch`` in one call."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[Item]], Awaitable[Sequence[Result]]],
        max_batch: int = MAX_BATCH,
        retry_alone: Callable[[Exception], bool] = lambda exc: False,
    ) -> None:
        """``retry_alone(error)`` says whether a failed batch may be one item's fault: its items then run one by one.

        Keep it to errors an item's own data can cause; retrying every item after an outage only multiplies waits.
        """
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._retry_alone = retry_alone
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._draining = False

    async def submit(self, item: Item) -> Result:
        """Process ``item`` in the next batch and return its result (or raise the batch's error)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
                try:
                    results = await self._run_batch([item for item, _ in batch])
                except Exception as exc:  # fails this batch's requests, never the drainer
                    if len(batch) > 1 and self._retry_alone(exc):
                        for item, future in batch:
                            if not future.done():  # a request cancelled meanwhile needs no retry
                                await self._run_alone(item, future)
                    else:
                        for _, future in batch:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._draining = False

    async def _run_alone(self, item: Item, future: asyncio.Future[Result]) -> None:
        """Run one item as a batch of its own, so only its own request sees its error."""
        try:
            [result] = await self._run_batch([item])
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)
