"""One desktop socket's `Session`: its states, its sender, and the dispatch of the agent's
commands.

The Service never sees a socket, and this module never decides anything about routing. One
`Session` per socket (opened by `router.agent_ws`, which owns the handshake), with explicit
states (open → closing → closed) and a **sender** task beside the receive loop. The sender is
the only writer of data frames. `Store.listen` wakes it with the pushed frames (the wake only
queues them and sets an event, so a pusher never waits for a socket); when they follow
`last_sent` without a gap it writes them as they came, otherwise it reads
`Store.since(last_sent)`; always in `seq` order, each write bounded by `send_timeout_s`. A
desktop too slow for that, or one that fell further behind than the outbox keeps, is closed
with a *reconnect* code and comes back with `?since=` — a slow desktop never holds up another
session or the pusher.

Every frame that carries a conversation or a customer passes the tier filter just before it is
written; a frame that fails becomes `withheld` (`router.delivery`, which also decides what to
write next). Client frames are rate limited (`router.limits.FrameLimit`), their type and `ref`
checked at the edge (`router.agent_fields`: `invalid` names the field) and dispatched through
one table, `router.agent_commands.HANDLERS`, whose handlers check the rest. Every answer,
errors included, goes through the outbox so it carries a `seq`.

May import the Service, the store, the codecs and the modules beside it (`agent_commands`,
`agent_fields`, `limits`, `delivery`), and aiohttp only for the socket it is handed; never
`router.agent_ws`, which opens sessions (the arrow points one way).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, Final

import structlog
from aiohttp import WSMsgType, web

from queues.args import MAX_ID
from router import agent_fields as check
from router.agent_commands import HANDLERS
from router.agent_fields import Frame, Invalid
from router.codec import Codec, decode_frame, encode_frame
from router.delivery import Delivery
from router.errors import (
    CLOSE_DRAINING,
    CLOSE_FORBIDDEN,
    CLOSE_HEARTBEAT,
    CLOSE_RATE_LIMITED,
    CLOSE_UNAUTHORIZED,
    ProtocolError,
    ServiceError,
    unreachable,
)
from router.identity import AgentIdentity
from router.limits import AgentLimits, FrameLimit, Verdict
from router.service import Service
from store.base import Store

log = structlog.get_logger("omniroute.agent_ws")

# A desktop that cannot take its frames in time is asked to reconnect (4000-4499).
CLOSE_SLOW: Final = CLOSE_HEARTBEAT


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Session:
    """One desktop socket of one agent; `run()` owns it from welcome to `disconnect`."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        codec: Codec,
        identity: AgentIdentity,
        service: Service,
        store: Store,
        limits: AgentLimits,
        since: int | None,
        transport: asyncio.Transport | None = None,
    ) -> None:
        self.ws, self.codec, self.identity, self.transport = ws, codec, identity, transport
        self.service, self.store, self.limits, self.since = service, store, limits, since
        self._gauge = contextlib.ExitStack()  # the ws_sessions gauge while connected
        self.id = str(uuid.uuid4())
        self.state = State.OPEN
        self.connected = False  # the Service knows this desktop (heartbeats cover it)
        self.close_code: int | None = None
        self.delivery = Delivery(store, identity.id, self._visible, self._write)
        self._wake_event = asyncio.Event()
        self._write_lock = asyncio.Lock()  # one batch of outbox frames at a time
        self._closed = asyncio.Event()
        self._rate = FrameLimit(limits.rate, limits.burst, limits.strikes)
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        agent = self.identity.id
        connected = False
        await self.store.listen(agent, self._wake)
        try:
            head = await self.store.head(agent)
            replay: list[tuple[int, Frame]] = []
            recovered = False  # without since there is nothing to recover (as in Centrifugo)
            if self.since is None or self.since > head:  # a seq from before a store reset
                self.delivery.last_sent = head
            else:
                replay, recovered = await self.store.since(agent, self.since)
                self.delivery.last_sent = self.since
            try:
                await self.service.connect(self.identity)
            except ServiceError as exc:
                await self._write_error_and_close(exc)
                return
            connected = self.connected = True
            if self.service.metrics is not None:
                self._gauge.enter_context(self.service.metrics.session("agent"))
            welcome = {
                "type": "welcome",
                "agent": {"id": agent, "tier": self.identity.tier, "name": self.identity.name},
                "session": self.id,
                "seq": head,
                "recovered": recovered,
                "held": await self.service.held(self.identity),
            }
            await self._write(welcome)
            log.info("agent_ws.open", agent=agent, session=self.id, since=self.since, seq=head)
            self._spawn(self._send_loop(replay), "send")
            await self._receive_loop()
        except (ConnectionError, TimeoutError):
            pass  # the socket went away (or stalled) mid-write: the cleanup below closes it
        finally:
            await self._cleanup(connected)

    async def close(
        self, code: int, reason: str, flush: bool = True, stalled: bool = False
    ) -> None:
        """Close the socket with `code` (from any task); `wait_closed` waits for the cleanup.

        With `flush`, what is already in the outbox is written first (bounded by
        `send_timeout_s`), so e.g. the `rate_limited` errors reach the desktop before the close.
        A `stalled` peer (or one that does not take the close frame in time) is dropped: a
        polite `transport.close()` would wait for it to read what is buffered.
        """
        if self.state is not State.OPEN:
            return
        self.state = State.CLOSING
        self.close_code = code
        self._wake_event.set()
        if flush and not stalled:
            stalled = not await self._bounded(self._flush(), self.limits.send_timeout_s)
        if not stalled:
            message = reason.encode()[:120]
            closing = self.ws.close(code=code, message=message)
            stalled = not await self._bounded(closing, self.limits.close_timeout_s)
        if stalled and self.transport is not None:
            self.transport.abort()
        log.info("agent_ws.closing", agent=self.identity.id, session=self.id, code=code)

    @staticmethod
    async def _bounded(step: Coroutine[Any, Any, Any], seconds: float) -> bool:
        """Run a write step with a time-out; False when it timed out or the socket failed.

        aiohttp leaves a cancelled drain waiter behind after a timed-out write, so a later
        write on that socket raises CancelledError at once; that one is a failure, not ours.
        """
        try:
            await asyncio.wait_for(step, seconds)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            return False
        except (TimeoutError, ConnectionError):
            return False
        except Exception as exc:  # e.g. the store failed during a flush: the socket is fine
            log.warning("agent_ws.close_step_failed", error=type(exc).__name__)
        return True

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def _cleanup(self, connected: bool) -> None:
        self.state = State.CLOSING
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), self.limits.close_timeout_s)
        try:
            await self.store.unlisten(self.identity.id, self._wake)
            if connected:
                await self.service.disconnect(self.identity)
        except Exception as exc:
            log.warning("agent_ws.cleanup_failed", agent=self.identity.id, error=type(exc).__name__)
        finally:
            self._gauge.close()
            self.state = State.CLOSED
            self._closed.set()
            code = self.close_code or self.ws.close_code
            log.info("agent_ws.closed", agent=self.identity.id, session=self.id, code=code)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=f"agent_ws.{name}.{self.id}"))

    # -- server → agent ----------------------------------------------------------------------

    def _wake(self, agent: str, seq: int, frames: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
        self.delivery.woken(seq, frames)
        self._wake_event.set()

    async def _send_loop(self, replay: list[tuple[int, Frame]]) -> None:
        delivery = self.delivery
        try:
            async with self._write_lock:
                await delivery.deliver(replay)
            carried: Sequence[tuple[int, Mapping[str, Any]]] | None = None  # first: the outbox
            while self.state is State.OPEN:
                self._wake_event.clear()
                async with self._write_lock:
                    complete = True
                    if carried is None:
                        frames, complete = await delivery.since()
                        carried = list(frames) if complete else []
                    await delivery.deliver(carried)
                if not complete:  # more than the outbox keeps was pushed since our last write
                    await self.close(CLOSE_SLOW, "fell behind: reconnect with since", flush=False)
                    break
                await self._wake_event.wait()
                carried = delivery.carried()
        except TimeoutError:
            await self.close(CLOSE_SLOW, "too slow: reconnect with since", stalled=True)
        except ConnectionError:
            await self.close(CLOSE_SLOW, "write failed", flush=False)
        except Exception as exc:  # the store failed us: the desktop should try another node
            log.error("agent_ws.send_failed", agent=self.identity.id, error=type(exc).__name__)
            await self.close(CLOSE_DRAINING, "delivery failed: reconnect with since", flush=False)

    async def _flush(self) -> None:
        async with self._write_lock:
            frames, _ = await self.delivery.since()
            await self.delivery.deliver(frames)

    async def _visible(self, customer: str) -> bool:
        try:
            return await self.service.visible(self.identity, customer)
        except ServiceError:
            return False

    async def _write(self, frame: Mapping[str, Any]) -> None:
        data = encode_frame(self.codec, frame)
        async with asyncio.timeout(self.limits.send_timeout_s):  # no task per write, as wait_for
            if isinstance(data, bytes):
                await self.ws.send_bytes(data)
            else:
                await self.ws.send_str(data)
        if self.service.metrics is not None:
            self.service.metrics.sent("agent")

    async def push(self, frame: Frame) -> None:
        """Through the outbox (numbered, replayed after a reconnect); when the store cannot take
        it (Redis is down), written straight to this socket without a `seq`, so the request
        still gets its answer."""
        try:
            await self.store.push([(self.identity.id, frame)])
        except Exception as exc:
            log.warning("agent_ws.push_failed", agent=self.identity.id, error=type(exc).__name__)
            with contextlib.suppress(Exception):
                async with self._write_lock:
                    await self._write(frame)

    async def _error(
        self, code: str, message: str, ref: Any, details: Mapping[str, Any] | None = None
    ) -> None:
        frame: Frame = {**(details or {}), "type": "error", "code": code, "message": message}
        frame["ref"] = ref
        await self.push(frame)

    async def _write_error_and_close(self, exc: ServiceError) -> None:
        """`connect` refused: tell the desktop once (outside the outbox) and close."""
        close = {"unauthorized": CLOSE_UNAUTHORIZED, "forbidden": CLOSE_FORBIDDEN}
        with contextlib.suppress(Exception):
            await self._write({"type": "error", "code": exc.code, "message": exc.message})
        await self.close(close.get(exc.code, CLOSE_DRAINING), exc.code, flush=False)

    # -- agent → server ----------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        while self.state is State.OPEN:
            msg = await self.ws.receive()
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                await self._on_message(msg.data, msg.type is WSMsgType.BINARY)
            else:  # CLOSE, CLOSING, CLOSED, ERROR (an oversized frame: aiohttp sent 1009)
                if msg.type is WSMsgType.ERROR:
                    self.close_code = self.ws.close_code
                break

    async def _on_message(self, data: str | bytes, binary: bool) -> None:
        ref: Any = None
        try:
            if binary is not self.codec.binary:
                wanted = "binary" if self.codec.binary else "text"
                raise Invalid(f"{self.codec.subprotocol} takes {wanted} frames")
            try:
                frame = decode_frame(self.codec, data)
            except ProtocolError as bad:
                raise Invalid(bad.message) from None
            with contextlib.suppress(Invalid):
                ref = check.ref(frame)
            verdict = self._rate.take()
            if verdict is not Verdict.TAKE:
                await self._rate_limited(ref, verdict)
                return
            ref = check.ref(frame)
            kind = check.frame_type(frame)
            handler = HANDLERS.get(kind)
            if handler is None:
                raise Invalid(f"unknown frame type {kind[:MAX_ID]!r}", "type")
            await handler(self, frame, ref)
        except Invalid as bad:
            await self._error("invalid", bad.message, ref, {"field": bad.field})
        except ServiceError as refused:
            await self._error(refused.code, refused.message, ref, refused.details)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug or an outage must cost one answer, never the socket
            if unreachable(exc):
                log.warning(
                    "agent_ws.unavailable", agent=self.identity.id, error=type(exc).__name__
                )
                await self._error("unavailable", "the store cannot be reached; retry", ref)
                return
            log.error("agent_ws.handler_failed", agent=self.identity.id, error=type(exc).__name__)
            await self._error("internal", "internal error", ref)

    async def _rate_limited(self, ref: Any, verdict: Verdict) -> None:
        if verdict is Verdict.CLOSE:
            await self.close(CLOSE_RATE_LIMITED, "rate limited")
            return
        await self._error("rate_limited", f"at most {self.limits.rate:g} frames per second", ref)
