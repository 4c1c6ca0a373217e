"""Group commit: concurrent callers' batches ride one backend call.

Under load, hundreds of requests each want one small write (an adapter's POST is usually one
event). Made one by one, every write is a round trip and a script call of its own; here, while
one call is in flight, the batches that arrive meanwhile wait and then go together in the next
call, so the number of calls follows the backend's speed, not the request rate. An idle server
sends each batch at once: nothing waits for a timer.

The combined call is atomic as a whole (one script), so each caller's batch is still stored
whole or not at all; a failure of the call is every rider's failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """`await submit(items)` → the results for `items`, from `run(all items of the group)`,
    which must return one result per item, in order."""

    def __init__(
        self, run: Callable[[list[Item]], Awaitable[list[Result]]], max_items: int = 500
    ) -> None:
        self._run = run
        self._max_items = max_items
        self._waiting: list[tuple[Sequence[Item], asyncio.Future[list[Result]]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, items: Sequence[Item]) -> list[Result]:
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._waiting.append((items, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            group: list[tuple[Sequence[Item], asyncio.Future[list[Result]]]] = []
            size = 0
            while self._waiting and (
                not group or size + len(self._waiting[0][0]) <= self._max_items
            ):
                items, future = self._waiting.pop(0)
                group.append((items, future))
                size += len(items)
            flat = [item for items, _ in group for item in items]
            try:
                results = await self._run(flat)
            except asyncio.CancelledError:  # shutting down: nobody may wait forever
                for _, future in group + self._waiting:
                    future.cancel()
                self._waiting.clear()
                raise
            except Exception as exc:
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for items, future in group:
                if not future.done():  # a caller that went away still had its items stored
                    future.set_result(results[start : start + len(items)])
                start += len(items)
