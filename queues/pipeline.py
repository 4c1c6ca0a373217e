"""Script calls of many callers in one round trip: the Redis engines' automatic pipeline.

Every routing decision and every store step is one Lua script call, and under load hundreds
of coroutines make them at once (desktops accepting, the consumer routing a batch, heartbeats,
ingest). Sent one by one, each costs a round trip and redis-py's per-command work (a pooled
connection, a timeout, a parse). `ScriptPipeline.call` instead queues the call; while one
pipeline is in flight the calls that arrive meanwhile wait and then go together in the next
one (`GroupCommit`), so the number of round trips follows Redis' speed, not the call rate. An
idle node sends each call at once: nothing waits for a timer.

Each call stays atomic on its own (a script); a pipeline is not a transaction, and calls of
different callers have no order between them — as before, since they were concurrent. A call
refused with NOSCRIPT (Redis lost its script cache, e.g. a restart without persistence) is
loaded and sent again; any other error reply is raised to its own caller only, while a lost
connection fails every call of that pipeline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """`await submit(items)` → the results for `items`, from `run(all items of the group)`,
    which must return one result per item, in order. While a `run` is in flight, what is
    submitted waits for the next one; a failure of `run` is every rider's failure."""

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


Call = tuple[AsyncScript, Sequence[Any]]


async def eval_many(client: aioredis.Redis[bytes], calls: Sequence[Call]) -> list[Any]:
    """Run each (script, KEYS[1] + ARGV) in one pipeline, in order; returns each reply or the
    error reply (an exception) in its place. Unlike redis-py's pipelined scripts this asks no
    SCRIPT EXISTS per pipeline: calls refused with NOSCRIPT are loaded and run again."""
    replies: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    for attempt in range(2):
        async with client.pipeline(transaction=False) as pipe:
            for i in todo:
                script, args = calls[i]
                pipe.evalsha(script.sha, 1, *args)  # type: ignore[attr-defined]
            got = await pipe.execute(raise_on_error=False)
        missing = []
        for i, reply in zip(todo, got, strict=True):
            if isinstance(reply, NoScriptError) and attempt == 0:
                missing.append(i)
            else:
                replies[i] = reply
        if not missing:
            break
        for script in {id(calls[i][0]): calls[i][0] for i in missing}.values():
            sha = await client.script_load(script.script)  # type: ignore[attr-defined,no-untyped-call]
            script.sha = sha  # type: ignore[attr-defined]
        todo = missing
    return replies


class ScriptPipeline:
    """One client's automatic pipeline of script calls (see the module docstring)."""

    def __init__(self, client: aioredis.Redis[bytes], max_calls: int = 1000) -> None:
        self.client = client
        self._commit: GroupCommit[Call, Any] = GroupCommit(self._send, max_calls)

    async def _send(self, calls: list[Call]) -> list[Any]:
        if len(calls) > 1:
            return await eval_many(self.client, calls)
        script, args = calls[0]  # alone (an idle node): a plain call, no pipeline around it
        try:
            return [await script(keys=args[:1], args=args[1:])]
        except aioredis.ResponseError as exc:  # its own error reply, as eval_many gives it
            return [exc]

    async def call(self, script: AsyncScript, *args: Any) -> Any:
        """One script call (KEYS[1] first, then ARGV); its reply, or its error raised."""
        [reply] = await self._commit.submit([(script, args)])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def many(self, calls: Sequence[Call]) -> list[Any]:
        """Several calls, in order, riding together; each reply or error reply in its place."""
        return await self._commit.submit(list(calls))
