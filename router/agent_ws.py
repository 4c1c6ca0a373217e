"""`GET /v1/agent/ws`: the agent desktop socket — handshake, frames ⇄ Service calls, delivery.

The protocol stops here: the Service never sees a socket, and this module never decides
anything about routing. One `Session` per socket, with explicit states (open → closing →
closed) and two tasks beside the receive loop:

* the **sender** is the only writer of data frames. `Store.listen` wakes it with the pushed
  frames (the wake only queues them and sets an event, so a pusher never waits for a socket);
  when they follow `last_sent` without a gap it writes them as they came, otherwise it reads
  `Store.since(last_sent)`; always in `seq` order, each write bounded by `send_timeout_s`.
  A desktop too slow for that, or one that fell further behind than the outbox keeps, is
  closed with a *reconnect* code and comes back with `?since=` — a slow desktop never holds
  up another session or the pusher.
* the **heartbeat** keeps the agent's presence alive in the engine: one task per node (in
  `AgentSocket`), not per socket, beats for every connected agent every `heartbeat_s` in one
  call (`Service.heartbeat_many`). WebSocket ping/pong (aiohttp's `heartbeat`) finds dead TCP
  peers; the engine's presence TTL covers a node that died with all its sockets.

Every frame that carries a conversation or a customer passes the tier filter just before it is
written; a frame that fails becomes `withheld` (`router.delivery`, which also decides what to
write next). Client frames are rate limited
(token bucket), validated at the edge (`invalid` names the field) and dispatched through one table,
`HANDLERS`. Every answer, errors included, goes through the outbox so it carries a `seq`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import re
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import structlog
from aiohttp import WSMsgType, web

from queues.policy import CHANNELS, GROUPS, TIERS
from router.auth import AuthError, subprotocol_token, verify_token
from router.delivery import Delivery
from router.errors import (
    CLOSE_DRAINING,
    CLOSE_FORBIDDEN,
    CLOSE_HEARTBEAT,
    CLOSE_RATE_LIMITED,
    CLOSE_UNAUTHORIZED,
    error_body,
    http_status,
    unreachable,
)
from router.protocol import JSON, MSGPACK, Codec, ProtocolError, decode_frame, encode_frame
from router.service import AgentIdentity, Service, ServiceError
from store.base import Store
from store.model import EDITABLE_FIELDS

log = structlog.get_logger("omniroute.agent_ws")

PATH: Final = "/v1/agent/ws"
SUBPROTOCOL_JSON: Final = JSON.subprotocol  # omniroute.v1.json: text frames, the default
SUBPROTOCOL_MSGPACK: Final = MSGPACK.subprotocol  # omniroute.v1.msgpack: binary frames
SUBPROTOCOLS: Final[Mapping[str, Codec]] = {c.subprotocol: c for c in (JSON, MSGPACK)}
MAX_FRAME_BYTES: Final = 64 * 1024  # larger client frames close the socket with 1009
SOCKET_ROLES: Final = ("agent", "supervisor")
# A desktop that cannot take its frames in time is asked to reconnect (4000-4499).
CLOSE_SLOW: Final = CLOSE_HEARTBEAT
MAX_ID = 200  # ids and refs from clients: non-empty strings up to this many characters

Frame = dict[str, Any]


@dataclass(frozen=True)
class Limits:
    """Timings and limits of desktop sockets; the defaults suit production."""

    ping_s: float = 15.0  # WebSocket ping interval; no pong within half of it closes the socket
    heartbeat_s: float = 5.0  # Service.heartbeat interval (well inside [presence] ttl_s)
    send_timeout_s: float = 10.0  # one frame write; slower → CLOSE_SLOW
    close_timeout_s: float = 2.0  # waiting for the client's close reply
    rate: float = 20.0  # client frames per second, sustained
    burst: int = 40  # client frames at once
    strikes: int = 10  # `rate_limited` answers before the socket is closed (one more per s)


# -- small parts ------------------------------------------------------------------------------


class TokenBucket:
    """`rate` tokens per second up to `burst`; `take()` spends one if there is one."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens, self.stamp = float(burst), clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class Invalid(Exception):
    """Raised when a client frame is malformed; `field` names the culprit."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.field = message, field


def _text(frame: Frame, name: str, optional: bool = False, limit: int = MAX_ID) -> str | None:
    value = frame.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        need = f"a non-empty string of at most {limit} characters"
        raise Invalid(f"{name} {'is missing' if value is None else 'must be ' + need}", name)
    return value


def _need(frame: Frame, name: str) -> str:
    value = _text(frame, name)
    assert value is not None
    return value


def _choice(frame: Frame, name: str, allowed: Sequence[str], optional: bool = False) -> str | None:
    value = frame.get(name)
    if value is None and optional:
        return None
    if value not in allowed:
        raise Invalid(f"{name} must be one of {', '.join(allowed)}", name)
    return str(value)


def _ref(frame: Frame) -> Any:
    ref = frame.get("ref")
    ok = ref is None or (isinstance(ref, str) and len(ref) <= MAX_ID)
    ok = ok or (isinstance(ref, int) and not isinstance(ref, bool) and abs(ref) < 2**53)
    if not ok:
        raise Invalid(f"ref must be a string of at most {MAX_ID} characters or an integer", "ref")
    return ref


# -- the session ------------------------------------------------------------------------------


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
        limits: Limits,
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
        self._frames = TokenBucket(limits.rate, limits.burst)
        self._strikes = TokenBucket(1.0, limits.strikes)
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

    async def _push(self, frame: Frame) -> None:
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
        await self._push(frame)

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
                ref = _ref(frame)
            if not self._frames.take():
                await self._rate_limited(ref)
                return
            ref = _ref(frame)
            kind = frame.get("type")
            if not isinstance(kind, str):
                raise Invalid(
                    "type is missing" if kind is None else "type must be a string", "type"
                )
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

    async def _rate_limited(self, ref: Any) -> None:
        if not self._strikes.take():
            await self.close(CLOSE_RATE_LIMITED, "rate limited")
            return
        await self._error("rate_limited", f"at most {self.limits.rate:g} frames per second", ref)

    # -- handlers, one per client frame type (see HANDLERS) -----------------------------------

    async def on_ping(self, frame: Frame, ref: Any) -> None:
        await self._push({"type": "ack", "ref": ref})

    async def on_presence_set(self, frame: Frame, ref: Any) -> None:
        state = _choice(frame, "state", ("available", "away"))
        assert state is not None
        await self.service.presence(self.identity, state, ref=ref)

    async def on_offer_accept(self, frame: Frame, ref: Any) -> None:
        reservation = _need(frame, "reservation")
        conversation = self.delivery.offered_conversation(reservation)
        await self.service.accept(self.identity, reservation, ref=ref, conversation=conversation)

    async def on_offer_reject(self, frame: Frame, ref: Any) -> None:
        reservation = _need(frame, "reservation")
        reason = _text(frame, "reason", optional=True, limit=500)
        await self.service.reject(self.identity, reservation, reason, ref=ref)

    async def on_message_send(self, frame: Frame, ref: Any) -> None:
        conversation = _need(frame, "conversation")
        body = _text(frame, "body", limit=MAX_FRAME_BYTES)
        assert body is not None
        channel = _choice(frame, "channel", CHANNELS, optional=True)
        await self.service.send_message(self.identity, conversation, body, channel, ref=ref)

    async def on_conversation_complete(self, frame: Frame, ref: Any) -> None:
        conversation = _need(frame, "conversation")
        disposition = _text(frame, "disposition", optional=True, limit=500)
        await self.service.complete(self.identity, conversation, disposition, ref=ref)

    async def on_wrapup_done(self, frame: Frame, ref: Any) -> None:
        await self.service.wrapup_done(self.identity, _need(frame, "conversation"), ref=ref)

    async def on_conversation_transfer(self, frame: Frame, ref: Any) -> None:
        conversation = _need(frame, "conversation")
        to_agent = _text(frame, "to_agent", optional=True)
        to_tier = _choice(frame, "to_tier", TIERS, optional=True)
        if (to_agent is None) == (to_tier is None):
            raise Invalid("give exactly one of to_agent and to_tier", "to_agent")
        await self.service.transfer(self.identity, conversation, to_agent, to_tier, ref=ref)

    async def on_customer_get(self, frame: Frame, ref: Any) -> None:
        await self.service.get_customer(self.identity, _need(frame, "customer"), ref=ref)

    async def on_customer_update(self, frame: Frame, ref: Any) -> None:
        customer = _need(frame, "customer")
        version = frame.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise Invalid("version must be an integer >= 0", "version")
        fields = frame.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise Invalid(
                f"fields must be an object with any of {', '.join(EDITABLE_FIELDS)}", "fields"
            )
        for name, value in fields.items():
            if name not in EDITABLE_FIELDS:
                raise Invalid(f"{str(name)[:MAX_ID]} is not editable", f"fields.{name}")
            if not isinstance(value, str):
                raise Invalid(f"fields.{name} must be a string", f"fields.{name}")
        await self.service.update_customer(self.identity, customer, version, fields, ref=ref)

    async def on_customer_classify(self, frame: Frame, ref: Any) -> None:
        customer = _need(frame, "customer")
        group = _choice(frame, "group", GROUPS)
        assert group is not None
        await self.service.classify(self.identity, customer, group, ref=ref)


Handler = Callable[[Session, Frame, Any], Awaitable[None]]
# Live sessions per application, for `close_all` on shutdown.
_SESSIONS: weakref.WeakKeyDictionary[web.Application, set[Session]] = weakref.WeakKeyDictionary()
_DRAINING: weakref.WeakSet[web.Application] = weakref.WeakSet()  # close_all began: no new ones

# Client frame type → handler; anything else is answered with `error` {code: invalid}.
HANDLERS: Final[Mapping[str, Handler]] = {
    "ping": Session.on_ping,
    "presence.set": Session.on_presence_set,
    "offer.accept": Session.on_offer_accept,
    "offer.reject": Session.on_offer_reject,
    "message.send": Session.on_message_send,
    "conversation.complete": Session.on_conversation_complete,
    "wrapup.done": Session.on_wrapup_done,
    "conversation.transfer": Session.on_conversation_transfer,
    "customer.get": Session.on_customer_get,
    "customer.update": Session.on_customer_update,
    "customer.classify": Session.on_customer_classify,
}


# -- the handshake ----------------------------------------------------------------------------

_SINCE = re.compile(r"[0-9]{1,18}")


def _refuse(code: str, message: str, field: str | None = None) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if code == "unauthorized" else None
    body = error_body(code, message, field)
    return web.json_response(body, status=http_status(code), headers=headers)


def _token(request: web.Request) -> str | None:
    """Authorization: Bearer, then an offered subprotocol `bearer.<JWT>` (how a browser sends
    it: it can set no header on a WebSocket, and a URL may end up in logs), then `?token=`."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return subprotocol_token(request.headers) or request.query.get("token") or None


class AgentSocket:
    """The `GET /v1/agent/ws` handler: checks everything it can before the upgrade."""

    def __init__(
        self,
        service: Service,
        store: Store,
        jwt_secret: str,
        allowed_origins: Sequence[str] = (),
        limits: Limits | None = None,
    ) -> None:
        self.service, self.store, self.jwt_secret = service, store, jwt_secret
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        self.limits = limits or Limits()
        self._live: set[Session] = set()
        self._emptied = asyncio.Event()
        self._beat: asyncio.Task[None] | None = None

    async def _heartbeats(self) -> None:
        """Beat for every agent with a connected desktop here, every `heartbeat_s`, in one
        engine call; ends when the last session has gone (the next one starts it again)."""
        while self._live:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.limits.heartbeat_s):
                    await self._emptied.wait()
            live = {s.identity.id: s.identity for s in self._live if s.connected}
            if not live:
                continue
            try:
                await self.service.heartbeat_many(list(live.values()))
            except Exception as exc:
                log.warning("agent_ws.heartbeat_failed", agents=len(live), error=type(exc).__name__)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        token = _token(request)
        if token is None:
            return self._refused("unauthorized", "a token is required (Authorization or ?token=)")
        try:
            identity = verify_token(token, self.jwt_secret)
        except AuthError as exc:
            return self._refused(exc.code, exc.message)
        if identity.role not in SOCKET_ROLES:
            return self._refused("forbidden", f"role {identity.role} cannot open a desktop socket")
        origin = request.headers.get("Origin")
        allowed = self.allowed_origins
        if allowed and origin is not None and origin.rstrip("/").lower() not in allowed:
            return self._refused("forbidden", "origin not allowed", "Origin")
        offered = [
            p.strip()
            for header in request.headers.getall("Sec-WebSocket-Protocol", [])
            for p in header.split(",")
            if p.strip()
        ]
        chosen = next((p for p in offered if p in SUBPROTOCOLS), None)
        if offered and chosen is None:
            known = f"{SUBPROTOCOL_JSON} or {SUBPROTOCOL_MSGPACK}"
            return self._refused(
                "invalid", f"subprotocol must be {known}", "Sec-WebSocket-Protocol"
            )
        since: int | None = None
        if "since" in request.query:
            text = request.query["since"]
            if not _SINCE.fullmatch(text):
                return self._refused("invalid", "since must be an integer >= 0", "since")
            since = int(text)
        ws = web.WebSocketResponse(
            protocols=(chosen,) if chosen else (),
            heartbeat=self.limits.ping_s,
            max_msg_size=MAX_FRAME_BYTES + 1,  # aiohttp refuses frames of max_msg_size and up
            compress=False,  # frames are small; deflate costs more CPU than it saves
            timeout=self.limits.close_timeout_s,
        )
        if not ws.can_prepare(request).ok:
            return self._refused("invalid", "expected a WebSocket upgrade")
        if request.app in _DRAINING:
            return self._refused("unavailable", "this node is shutting down")
        await ws.prepare(request)
        codec = SUBPROTOCOLS[chosen or SUBPROTOCOL_JSON]
        transport = request.transport
        session = Session(
            ws, codec, identity, self.service, self.store, self.limits, since, transport
        )
        sessions = _SESSIONS.setdefault(request.app, set())
        sessions.add(session)
        self._live.add(session)
        self._emptied.clear()
        if self._beat is None or self._beat.done():
            self._beat = asyncio.create_task(self._heartbeats(), name="agent_ws.heartbeats")
        try:
            await session.run()
        finally:
            sessions.discard(session)
            self._live.discard(session)
            if not self._live:
                self._emptied.set()
        return ws

    def _refused(self, code: str, message: str, field: str | None = None) -> web.Response:
        log.info("agent_ws.refused", code=code, field=field)
        return _refuse(code, message, field)


def agent_ws_routes(
    service: Service,
    store: Store,
    jwt_secret: str,
    allowed_origins: Sequence[str] = (),
    limits: Limits | None = None,
) -> list[web.RouteDef]:
    """The desktop socket's route, for `app.add_routes`."""
    socket = AgentSocket(service, store, jwt_secret, allowed_origins, limits)
    return [web.get(PATH, socket.handle)]


def add_agent_ws(
    app: web.Application,
    service: Service,
    store: Store,
    jwt_secret: str,
    allowed_origins: Sequence[str] = (),
    limits: Limits | None = None,
) -> None:
    """Add the route, and drain the sockets (`close_all`) when the app shuts down — before the
    cleanup steps close the Service, so every `disconnect` still reaches it."""
    app.add_routes(agent_ws_routes(service, store, jwt_secret, allowed_origins, limits))

    async def drain(app: web.Application) -> None:
        await close_all(app)

    app.on_shutdown.append(drain)


def sessions(app: web.Application) -> list[Session]:
    """The live desktop sessions of `app` (for ops views and tests)."""
    return list(_SESSIONS.get(app, ()))


async def close_all(app: web.Application, code: int = CLOSE_DRAINING, wait_s: float = 5.0) -> int:
    """Close every live session of `app` with `code` and wait (bounded) for their cleanup, so
    each `Service.disconnect` has run. Returns how many sessions there were."""
    _DRAINING.add(app)
    live = sessions(app)
    if not live:
        return 0
    await asyncio.gather(*(s.close(code, "server draining") for s in live), return_exceptions=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(s.wait_closed() for s in live)), wait_s)
    return len(live)
