"""Script calls of many callers in one round trip: the Redis engines' automatic pipeline.

Every routing decision and every store step is one Lua call (a function or a script), and
under load hundreds of coroutines make them at once (desktops accepting, the consumer routing
a batch, heartbeats, ingest). Sent one by one, each costs a round trip and redis-py's
per-command work (a pooled connection, a timeout, a parse). `ScriptPipeline.call` queues the
call instead; while one pipeline is in flight the calls that arrive meanwhile wait and then go
together in the next one (`GroupCommit`), so the number of round trips follows Redis' speed,
not the call rate. An idle node sends each call at once: nothing waits for a timer.

Each call stays atomic on its own (a script); a pipeline is not a transaction, and calls of
different callers have no order between them — as before, since they were concurrent. A call
Redis does not have (it lost its script cache, or a fresh Redis has no function library) is
loaded and sent again; any other error reply is raised to its own caller only, while a lost
connection fails every call of that pipeline.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
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


class Procedure(ABC):
    """A server-side procedure the pipeline can call: a script (`Script`, EVALSHA) or a
    function of a loaded library (`Function`, FCALL). KEYS[1] comes first in `args`."""

    @abstractmethod
    def queue(self, pipe: Pipeline[bytes], args: Sequence[Any]) -> None:
        """Add one call to a pipeline."""

    @abstractmethod
    async def call(self, client: aioredis.Redis[bytes], args: Sequence[Any]) -> Any:
        """One call on its own (loading the procedure first when Redis lacks it)."""

    @abstractmethod
    def missing(self, reply: Any) -> bool:
        """True when `reply` says Redis does not have the procedure (lost cache, restart)."""

    @abstractmethod
    async def load(self, client: aioredis.Redis[bytes]) -> None:
        """Give Redis the procedure."""


class Script(Procedure):
    """A Lua script, called by its SHA1 (EVALSHA)."""

    def __init__(self, client: aioredis.Redis[bytes], source: str) -> None:
        self.script: AsyncScript = client.register_script(source)

    def queue(self, pipe: Pipeline[bytes], args: Sequence[Any]) -> None:
        pipe.evalsha(self.script.sha, 1, *args)  # type: ignore[attr-defined]

    async def call(self, client: aioredis.Redis[bytes], args: Sequence[Any]) -> Any:
        return await self.script(keys=args[:1], args=args[1:], client=client)

    def missing(self, reply: Any) -> bool:
        return isinstance(reply, NoScriptError)

    async def load(self, client: aioredis.Redis[bytes]) -> None:
        source = self.script.script  # type: ignore[attr-defined]
        self.script.sha = await client.script_load(source)  # type: ignore[attr-defined,no-untyped-call]


class Function(Procedure):
    """A function of a Lua library (FCALL), the library loaded by `library` (its code)."""

    def __init__(self, name: str, library: str) -> None:
        self.name = name
        self.library = library

    def queue(self, pipe: Pipeline[bytes], args: Sequence[Any]) -> None:
        _ = pipe.fcall(self.name, 1, *args)  # queued: a pipeline answers in execute()

    async def call(self, client: aioredis.Redis[bytes], args: Sequence[Any]) -> Any:
        try:
            return await client.fcall(self.name, 1, *args)
        except aioredis.ResponseError as exc:
            if not self.missing(exc):
                raise
        await self.load(client)
        return await client.fcall(self.name, 1, *args)

    def missing(self, reply: Any) -> bool:
        return isinstance(reply, aioredis.ResponseError) and "Function not found" in str(reply)

    async def load(self, client: aioredis.Redis[bytes]) -> None:
        await client.function_load(self.library, replace=True)


Call = tuple[Procedure, Sequence[Any]]


async def eval_many(client: aioredis.Redis[bytes], calls: Sequence[Call]) -> list[Any]:
    """Run each (procedure, KEYS[1] + ARGV) in one pipeline, in order; returns each reply or
    the error reply (an exception) in its place. Unlike redis-py's pipelined scripts this asks
    no SCRIPT EXISTS per pipeline: calls refused because Redis lacks the procedure are loaded
    and run again, in their order."""
    replies: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    for attempt in range(2):
        async with client.pipeline(transaction=False) as pipe:
            for i in todo:
                procedure, args = calls[i]
                procedure.queue(pipe, args)
            got = await pipe.execute(raise_on_error=False)
        missing = []
        for i, reply in zip(todo, got, strict=True):
            if attempt == 0 and calls[i][0].missing(reply):
                missing.append(i)
            else:
                replies[i] = reply
        if not missing:
            break
        for procedure in {id(calls[i][0]): calls[i][0] for i in missing}.values():
            await procedure.load(client)
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
        procedure, args = calls[0]  # alone (an idle node): a plain call, no pipeline around it
        try:
            return [await procedure.call(self.client, args)]
        except aioredis.ResponseError as exc:  # its own error reply, as eval_many gives it
            return [exc]

    async def call(self, procedure: Procedure, *args: Any) -> Any:
        """One call (KEYS[1] first, then ARGV); its reply, or its error raised."""
        [reply] = await self._commit.submit([(procedure, args)])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def many(self, calls: Sequence[Call]) -> list[Any]:
        """Several calls, in order, riding together; each reply or error reply in its place."""
        return await self._commit.submit(list(calls))
