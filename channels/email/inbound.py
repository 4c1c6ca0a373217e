"""SMTP in: the listener that takes customer mail for the support addresses, as `Mail`.

`SmtpListener` runs aiosmtpd on the server's own event loop, with a cap on concurrent sessions
(421 beyond it) and an idle timeout. `SmtpHandler` accepts mail only for the configured support
addresses (others: 550 at RCPT TO), refuses oversized mail (SIZE is announced; 552 at MAIL FROM
for a SIZE over the limit and again at DATA), parses the message in a worker thread under a
deadline (451 "try later" when it runs out), refuses mail with too many MIME parts (552) or from
one of our own addresses (a loop), and turns what is left into a `Mail`. It hands the `Mail` to
`deliver` and answers 250 only once that returned (the event is durable); a failure there is a
451, so the sending MTA tries again later.

One email sent to several support addresses is one `Mail` id, however the MTA splits the
delivery: the id is derived from the Message-ID (or from the message itself when it has none),
and `to` lists every support address the message names, not just this delivery's recipients.

Imports `channels.email.parse` (the MIME reading) and aiosmtpd; never `router`, which maps
`Mail` to an `InboundEvent` (`router.channel_email`). Logs carry ids and counts only.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from channels.email.parse import (
    MAX_PARTS,
    ParseTimeout,
    TooManyParts,
    clip_references,
    mailbox,
    mailboxes,
    message_ids,
    parse_mail,
)

log = structlog.get_logger("omniroute.channels.email")

PARSE_TIMEOUT_S = 5.0
MAX_RECIPIENTS = 50  # per SMTP transaction
MAX_SESSIONS = 100  # concurrent SMTP connections; more get 421
IDLE_TIMEOUT_S = 120.0

# SMTP replies (RFC 5321 codes, RFC 3463 enhanced codes).
REPLY_UNKNOWN_RECIPIENT = "550 5.1.1 Recipient not accepted here"
REPLY_TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
REPLY_TOO_BIG = "552 5.3.4 Message too big"
REPLY_TOO_MANY_PARTS = f"552 5.3.4 Too many MIME parts (at most {MAX_PARTS})"
REPLY_NO_SENDER = "550 5.1.7 The message needs a valid From address"
REPLY_LOOP = "550 5.7.1 Mail from a support address is not taken (mail loop)"
REPLY_TIMEOUT = "451 4.3.0 The message could not be processed in time, try again later"
REPLY_UNPARSABLE = "554 5.6.0 The message could not be parsed"
REPLY_TRY_LATER = "451 4.3.0 Temporary failure, try again later"
REPLY_BUSY = b"421 4.7.0 Too many connections, try again later\r\n"


@dataclass(frozen=True)
class Attachment:
    """What the router keeps of an attachment: never its content."""

    name: str | None
    type: str
    size: int
    sha256: str

    def wire(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Mail:
    """One accepted customer email, normalised (the fields of an `InboundEvent`)."""

    id: str  # "email:<hash of the Message-ID>" (or of the message, without one)
    sender: str  # the From address, lowercase
    to: tuple[str, ...]  # the support addresses it was for
    subject: str | None
    body: str
    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    reply_to: str | None = None
    auto_submitted: str | None = None  # RFC 3834: auto-replied, auto-generated (not "no")
    attachments: tuple[Attachment, ...] = ()
    parts: int = 1
    truncated: bool = False

    def meta(self) -> dict[str, Any]:
        """Channel extras for `InboundEvent.meta`; what `EmailPort` reads back as `reply_meta`."""
        refs = clip_references(self.references)
        meta: dict[str, Any] = {
            "from": self.sender,
            "to": list(self.to),
            "subject": self.subject,
            "message_id": self.message_id,
            "references": refs,
            "attachments": [a.wire() for a in self.attachments],
        }
        if self.reply_to and self.reply_to != self.sender:
            meta["reply_to"] = self.reply_to
        if self.auto_submitted:
            meta["auto_submitted"] = self.auto_submitted
        if self.truncated:
            meta["truncated"] = True
        return meta


Deliver = Callable[[Mail], Awaitable[None]]


class OwnAddress(Exception):
    """Raised when a message comes from one of our own support addresses (a mail loop)."""


class SmtpHandler:
    """aiosmtpd hooks: recipients at RCPT TO, parsing and delivery at DATA."""

    def __init__(
        self,
        addresses: Sequence[str],
        deliver: Deliver,
        *,
        max_bytes: int,
        max_parts: int = MAX_PARTS,
        parse_timeout_s: float = PARSE_TIMEOUT_S,
        max_recipients: int = MAX_RECIPIENTS,
    ) -> None:
        self.addresses = frozenset(a.strip().lower() for a in addresses)
        self.deliver = deliver
        self.max_bytes = max_bytes
        self.max_parts = max_parts
        self.parse_timeout_s = parse_timeout_s
        self.max_recipients = max_recipients
        # Our own small pool: a slow parse never starves the loop's default executor (DNS).
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="omniroute-mime")

    def close(self) -> None:
        """Drop queued parses; a running one stops at its deadline."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.strip().lower() not in self.addresses:
            log.info("email.recipient_refused")
            return REPLY_UNKNOWN_RECIPIENT
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return REPLY_TOO_MANY_RECIPIENTS
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if len(raw) > self.max_bytes:
            return REPLY_TOO_BIG
        recipients = tuple(dict.fromkeys(r.strip().lower() for r in envelope.rcpt_tos))
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.parse_timeout_s
        job = loop.run_in_executor(
            self._pool, _parse, raw, recipients, self.addresses, self.max_parts, deadline
        )
        try:
            mail = await asyncio.wait_for(job, self.parse_timeout_s)
        except (TimeoutError, ParseTimeout):
            log.warning("email.parse_timeout", size=len(raw))
            return REPLY_TIMEOUT
        except TooManyParts:
            log.info("email.refused", reason="parts", size=len(raw))
            return REPLY_TOO_MANY_PARTS
        except OwnAddress:
            log.warning("email.refused", reason="loop", size=len(raw))
            return REPLY_LOOP
        except Exception as exc:  # a parser bug costs this message, never the listener
            log.error("email.parse_failed", error=type(exc).__name__, size=len(raw))
            return REPLY_UNPARSABLE
        if mail is None:
            log.info("email.refused", reason="sender", size=len(raw))
            return REPLY_NO_SENDER
        try:
            await self.deliver(mail)
        except Exception as exc:
            log.error("email.ingest_failed", event_id=mail.id, error=type(exc).__name__)
            return REPLY_TRY_LATER
        log.info(
            "email.accepted",
            event_id=mail.id,
            size=len(raw),
            parts=mail.parts,
            attachments=len(mail.attachments),
        )
        return "250 2.0.0 OK"

    async def handle_exception(self, error: Exception) -> str:
        log.error("email.session_failed", error=type(error).__name__)
        return REPLY_TRY_LATER


def _parse(
    raw: bytes,
    recipients: tuple[str, ...],
    addresses: frozenset[str],
    max_parts: int,
    deadline: float,
) -> Mail | None:
    """Runs in the worker thread; gives up (ParseTimeout) after `deadline` (time.monotonic)."""
    parsed = parse_mail(raw, max_parts=max_parts, deadline=deadline)
    sender = mailbox(parsed.message, "From")
    if sender is None:
        return None
    if sender in addresses:
        raise OwnAddress
    named = {*(mailboxes(parsed.message, "To") or ()), *(mailboxes(parsed.message, "Cc") or ())}
    to = tuple(sorted({*recipients, *(a for a in named if a in addresses)}))
    message_id = next(iter(message_ids(parsed.header("Message-ID"))), None)
    key = message_id.encode() if message_id else parsed.fingerprint
    auto = " ".join((parsed.header("Auto-Submitted") or "").split())[:100]
    return Mail(
        id="email:" + hashlib.sha256(key).hexdigest()[:40],
        sender=sender,
        to=to,
        subject=parsed.subject,
        body=parsed.body,
        message_id=message_id,
        in_reply_to=next(iter(message_ids(parsed.header("In-Reply-To"))), None),
        references=tuple(message_ids(parsed.header("References"))[-100:]),
        reply_to=mailbox(parsed.message, "Reply-To"),
        auto_submitted=auto if auto and auto.lower() != "no" else None,
        attachments=tuple(Attachment(**a) for a in parsed.attachments),
        parts=parsed.parts,
        truncated=parsed.truncated,
    )


class SmtpListener:
    """An aiosmtpd server on the running loop, with a cap on concurrent sessions."""

    def __init__(
        self,
        handler: SmtpHandler,
        host: str,
        port: int,
        *,
        hostname: str = "omniroute",
        max_sessions: int = MAX_SESSIONS,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.hostname = hostname
        self.max_sessions = max_sessions
        self.idle_timeout_s = idle_timeout_s
        self.sessions: set[_Session] = set()
        self._server: asyncio.Server | None = None

    def _session(self) -> _Session:
        return _Session(
            self,
            self.handler,
            data_size_limit=self.handler.max_bytes,
            enable_SMTPUTF8=True,
            hostname=self.hostname,
            ident="omniroute",
            timeout=self.idle_timeout_s,
            loop=asyncio.get_running_loop(),
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._session, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("email.listening", port=self.port, addresses=len(self.handler.addresses))

    async def stop(self) -> None:
        """Stop accepting, close open sessions (mail not yet answered is retried by its MTA).
        Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()
        await server.wait_closed()
        self.handler.close()
        log.info("email.stopped")


class _Session(SMTP):
    """One SMTP connection; refused with 421 when the listener is full."""

    def __init__(self, listener: SmtpListener, handler: SmtpHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.listener = listener
        self.refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self.listener.sessions) >= self.listener.max_sessions:
            self.refused = True
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(REPLY_BUSY)
            transport.close()
            log.warning("email.busy", sessions=len(self.listener.sessions))
            return
        self.listener.sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self.refused:
            return
        self.listener.sessions.discard(self)
        super().connection_lost(error)
