"""One chat widget socket's `ChatSession` (open → closing → closed), opened by
`router.channel_chat`, which owns the handshake:

* `welcome` {customer, site, seq, recovered} first, written directly. `customer` is the
  token's `sub`, or for an anonymous visitor the customer their last reply named (null for a
  visitor the server has not heard from yet; the `ack` of their first message names it).
* The **sender** is the only writer of outbox frames: `Store.listen` wakes it, it reads
  `Store.since(last_sent)` and writes each frame with its `seq`. With `?since=SEQ` it replays
  what came after SEQ (`recovered` says whether all of it was still kept). Without `since`,
  the replies sent after the customer's latest inbound message (on any channel) are replayed:
  a widget that lost its state shows the answers to the last thing the customer said.
* The **receive loop** takes JSON text frames: `message` {body, ref?} → one `InboundEvent`
  → `Service.ingest` → `ack` {ref, id, customer}; `ping` {ref?} → `pong`. Answers and errors
  go to this socket only (never replayed). Bad JSON, an unknown type or a bad body → `error`
  {code: invalid, field} and nothing stored; a frame over 64 KiB → close 1009; more than
  `rate`/s (burst `burst`) per visitor on this node → `error` {code: rate_limited}, and close
  4029 when that goes on.

Logs carry ids (session, customer, event, conversation) — never bodies, visitor ids or addresses.
May import the Service, the store, the codecs and `channels.chat`; never `router.channel_chat`,
which opens sessions (the arrow points one way).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from channels.chat import ChatInvalid, Visitor, iso_now, kind_of, message_body, ref_of
from router.codec import JSON, decode_frame, encode_frame
from router.errors import CLOSE_DRAINING, CLOSE_RATE_LIMITED, Overloaded, ProtocolError
from router.limits import ChatLimits, SharedFrameLimits, Verdict
from router.protocol import validate_event
from router.service import Service
from store.base import Store
from store.errors import UnknownCustomer
from store.model import Frames, InboundEvent

log = structlog.get_logger("omniroute.chat")

Frame = dict[str, Any]


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class ChatSession:
    """One widget socket of one visitor; `run()` owns it from welcome to close."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        visitor: Visitor,
        service: Service,
        limits: ChatLimits,
        shared: SharedFrameLimits,
        since: int | None,
    ) -> None:
        self.ws, self.visitor, self.service, self.limits = ws, visitor, service, limits
        self.store: Store = service.store
        self.shared, self.since = shared, since
        self.id = str(uuid.uuid4())
        self.state = State.OPEN
        self.customer = visitor.customer
        self.last_sent = 0
        self._linked = not visitor.linked
        self._wake_event = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._rate = shared.hold(visitor.address)  # every socket of this visitor spends it
        self._sender: asyncio.Task[None] | None = None
        self.done = asyncio.Event()  # set when `run` has cleaned up

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        key = self.visitor.outbox
        await self.store.listen(key, self._wake)
        try:
            head = await self.store.head(key)
            replay, recovered = await self._replay(head)
            await self._link()
            welcome = {
                "type": "welcome",
                "customer": self.customer,
                "site": self.visitor.site,
                "session": self.id,
                "seq": head,
                "recovered": recovered,
            }
            await self._write(welcome)
            log.info("chat.open", session=self.id, customer=self.customer, seq=head)
            self._sender = asyncio.create_task(self._send_loop(replay))
            await self._receive_loop()
        except (ConnectionError, TimeoutError):
            pass  # the socket went away mid-write
        finally:
            self.state = State.CLOSING
            if self._sender is not None:
                self._sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._sender
            with contextlib.suppress(Exception):
                await self.store.unlisten(key, self._wake)
            self.shared.release(self.visitor.address)
            if not self.ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.ws.close(), self.limits.close_timeout_s)
            self.state = State.CLOSED
            self.done.set()
            log.info("chat.closed", session=self.id, code=self.ws.close_code)

    async def close(self, code: int, reason: str) -> None:
        """Close from any task; the receive loop then ends and `run` cleans up."""
        if self.state is not State.OPEN:
            return
        self.state = State.CLOSING
        self._wake_event.set()
        with contextlib.suppress(Exception):
            closing = self.ws.close(code=code, message=reason.encode()[:120])
            await asyncio.wait_for(closing, self.limits.close_timeout_s)
        log.info("chat.closing", session=self.id, code=code)

    def _wake(self, _key: str, _seq: int, _frames: Frames) -> None:
        self._wake_event.set()

    async def _replay(self, head: int) -> tuple[list[tuple[int, Frame]], bool]:
        """What the sender writes first, and whether the gap after `since` was kept whole.

        Also learns an anonymous visitor's customer: the one their latest reply named."""
        key = self.visitor.outbox
        tail_from = max(0, head - self.limits.replay_max)
        if self.since is not None and self.since <= head:
            self.last_sent = self.since
            replay, recovered = await self.store.since(key, self.since)
            if self.customer is None:
                self.customer = _named(replay) or _named(
                    (await self.store.since(key, tail_from))[0]
                )
            return replay, recovered
        self.last_sent = head  # no since (or one from before a store reset): start at head
        kept, _ = await self.store.since(key, tail_from)
        self.customer = self.customer or _named(kept)
        if not kept or self.customer is None:
            return [], self.since is None
        history = await self.store.history(self.customer, self.limits.history)
        last_in = max((i for i, ix in enumerate(history) if ix.direction == "in"), default=-1)
        unanswered = {ix.id for ix in history[last_in + 1 :] if ix.direction == "out"}
        return [(seq, f) for seq, f in kept if f.get("id") in unanswered], self.since is None

    async def _link(self) -> None:
        """Link the addresses the token vouches for, once the customer exists."""
        if self._linked or self.visitor.customer is None:
            return
        try:
            await self.store.link(self.visitor.customer, self.visitor.linked)
        except UnknownCustomer:
            return  # a first visit: linked after their first message created the customer
        self._linked = True
        log.info("chat.linked", session=self.id, customer=self.visitor.customer)

    # -- server → widget ---------------------------------------------------------------------

    async def _send_loop(self, replay: Sequence[tuple[int, Frame]]) -> None:
        key = self.visitor.outbox
        try:
            for seq, frame in replay:
                await self._write({**frame, "seq": seq})
                self.last_sent = max(self.last_sent, seq)
            while self.state is State.OPEN:
                self._wake_event.clear()
                frames, _ = await self.store.since(key, self.last_sent)
                for seq, frame in frames:
                    if seq > self.last_sent:
                        await self._write({**frame, "seq": seq})
                        self.last_sent = seq
                if self.state is not State.OPEN:
                    break
                await self._wake_event.wait()
        except (ConnectionError, TimeoutError):
            await self.close(CLOSE_DRAINING, "too slow: reconnect with since")
        except Exception as exc:  # the store failed us: reconnect (to any node)
            log.error("chat.send_failed", session=self.id, error=type(exc).__name__)
            await self.close(CLOSE_DRAINING, "delivery failed: reconnect with since")

    async def _write(self, frame: Mapping[str, Any]) -> None:
        data = encode_frame(JSON, frame)
        assert isinstance(data, str)
        async with self._write_lock:
            async with asyncio.timeout(self.limits.send_timeout_s):
                await self.ws.send_str(data)

    async def _answer(self, frame: Frame) -> None:
        with contextlib.suppress(ConnectionError, TimeoutError):
            await self._write(frame)

    async def _error(self, code: str, message: str, ref: Any, field: str | None = None) -> None:
        frame: Frame = {"type": "error", "code": code, "message": message, "ref": ref}
        if field is not None:
            frame["field"] = field
        await self._answer(frame)

    # -- widget → server ---------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        while self.state is State.OPEN:
            msg = await self.ws.receive()
            if msg.type is WSMsgType.TEXT:
                await self._on_text(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await self._error("invalid", "send JSON text frames", None)
            else:  # CLOSE, CLOSING, CLOSED, ERROR (an oversized frame: aiohttp sent 1009)
                break

    async def _on_text(self, data: str) -> None:
        verdict = self._rate.take()
        if verdict is Verdict.CLOSE:
            await self.close(CLOSE_RATE_LIMITED, "rate limited")
            return
        if verdict is Verdict.REFUSE:
            message = f"at most {self.limits.rate:g} messages per second"
            await self._error("rate_limited", message, None)
            return
        ref: Any = None
        try:
            try:
                frame = decode_frame(JSON, data)
            except ProtocolError as bad:
                raise ChatInvalid(bad.message) from None
            ref = ref_of(frame)
            if kind_of(frame) == "ping":
                await self._answer({"type": "pong", "ref": ref})
                return
            await self._on_message(message_body(frame), ref)
        except ChatInvalid as bad:
            await self._error("invalid", bad.message, ref, bad.field)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Overloaded:  # nothing was stored: the widget may send it again in a moment
            await self._error("overloaded", "the message was not taken; send it again", ref)
        except Exception as exc:  # the store is down, or a bug: one answer, never the socket
            log.error("chat.message_failed", session=self.id, error=type(exc).__name__)
            await self._error("unavailable", "the message was not taken; send it again", ref)

    async def _on_message(self, body: str, ref: Any) -> None:
        event = self._event(body)
        (ingested,) = await self.service.ingest([event])
        self.customer = ingested.customer
        await self._link()
        await self._answer({"type": "ack", "ref": ref, "id": event.id, "customer": self.customer})
        log.info(
            "chat.message",
            session=self.id,
            event_id=event.id,
            customer=ingested.customer,
            conversation=ingested.conversation,
        )

    def _event(self, body: str) -> InboundEvent:
        raw: Frame = {
            "id": f"chat-{uuid.uuid4()}",
            "type": "message",
            "channel": "chat",
            "from": self.visitor.address,
            "site": self.visitor.site,
            "body": body,
            "occurred_at": iso_now(),
            "meta": {"session": self.id, "auth": "token" if self.visitor.customer else "visitor"},
        }
        if self.visitor.customer is not None:
            raw["customer_id"] = self.visitor.customer
        try:
            return validate_event(raw)
        except ProtocolError as bad:  # cannot happen for a checked visitor and body
            raise ChatInvalid(bad.message, bad.field) from None


def _named(frames: Sequence[tuple[int, Mapping[str, Any]]]) -> str | None:
    """The customer the newest of these outbox frames names, if any."""
    named = [f["customer"] for _, f in frames if isinstance(f.get("customer"), str)]
    return named[-1] if named else None
