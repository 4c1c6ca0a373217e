"""Email: an SMTP listener in, an SMTP relay out. See DESIGN.md, "Channel endpoints → Email".

Inbound, `SmtpListener` runs aiosmtpd on the server's own event loop. `SmtpHandler` accepts
mail only for the configured support addresses (others: 550 at RCPT TO), refuses oversized
mail (SIZE is announced; 552 at MAIL FROM for a SIZE over the limit and again at DATA), parses
the message in a worker thread under a deadline (451 "try later" when it runs out), refuses
mail with too many MIME parts (552), and turns what is left into a `Mail`: the customer's
address, subject, text body (text/plain preferred, HTML reduced to text, charsets decoded),
threading ids, and attachments as metadata only (name, type, size, sha256 — never the bytes).
It hands the `Mail` to `deliver` and answers 250 only once that returned (the event is
durable); a failure there is a 451, so the sending MTA tries again later.

One email sent to several support addresses is one `Mail` id, however the MTA splits the
delivery: the id is derived from the Message-ID (or from the message itself when it has none),
and `to` lists every support address the message names, not just this delivery's recipients.

Outbound, `EmailPort` answers the customer's last mail through the relay: `Re:` subject,
a new Message-ID on the sender's domain, In-Reply-To and References so the customer's mail
client threads it. It records that Message-ID on the outbound interaction (`annotate`) before
sending, so a reply to it threads back, and sends in the background with bounded retries on
temporary failures; the agent's request never waits for the relay.

This module knows SMTP and MIME, not the router: `router.channel_email` maps `Mail` to an
`InboundEvent` and wires both halves into the app. Logs carry ids and counts only.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hashlib
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email import errors, policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formatdate
from html.parser import HTMLParser
from typing import Any

import aiosmtplib
import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from channels.base import ChannelRefused, Delivered, OutboundMessage, OutboundPort

log = structlog.get_logger("omniroute.channels.email")

MAX_PARTS = 100  # MIME entities per message, the message itself included
PARSE_TIMEOUT_S = 5.0
MAX_RECIPIENTS = 50  # per SMTP transaction
MAX_SESSIONS = 100  # concurrent SMTP connections; more get 421
IDLE_TIMEOUT_S = 120.0
MAX_REFERENCES_OUT = 20  # References we send: the first and the newest ones

_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\"]+")
_MSG_ID = re.compile(r"<[^<>\s\x00-\x1f\x7f]{1,996}>")
_RE_PREFIX = re.compile(r"^\s*((re|aw|antw|sv|vs)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)

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


def email_address(value: str | None) -> str | None:
    """A plain, lowercased email address, or None when `value` is not one."""
    if not value:
        return None
    address = value.strip().lower()
    if len(address) > 320 or not _ADDRESS.fullmatch(address):
        return None
    return address


# An SMTPUTF8 address (raw UTF-8 in the local part) is an address, not an ambiguity.
_TOLERATED = (errors.NonASCIILocalPartDefect, errors.UndecodableBytesDefect)


def mailboxes(message: EmailMessage, name: str) -> list[str] | None:
    """The addresses of an address header (From, Reply-To, To, Cc), each taken from its
    address part — the display name, quoted or RFC 2047-encoded, is never read — lowercased;
    None when the header is missing, repeated, or did not parse cleanly (any defect: an
    unquoted `@` in a display name, or an encoded word inside the address, makes it
    ambiguous; raw UTF-8 in the local part is fine)."""
    try:
        values = message.get_all(name) or []
        if len(values) != 1 or any(type(d) not in _TOLERATED for d in values[0].defects):
            return None
        found = [email_address(_raw_utf8(a.addr_spec)) for a in values[0].addresses]
    except Exception:  # a header the parser could not make an address header of
        return None
    return None if None in found else [a for a in found if a is not None]


def _raw_utf8(text: str) -> str | None:
    """Raw UTF-8 header bytes come out of the parser as surrogate escapes: read them back."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeError:
        return None


def mailbox(message: EmailMessage, name: str) -> str | None:
    """The one address of `name` (see `mailboxes`); None for none or several: a reply goes
    to one address, and choosing among several the sender listed is not ours to guess."""
    found = mailboxes(message, name)
    return found[0] if found is not None and len(found) == 1 else None


def message_ids(value: str | None) -> list[str]:
    """Every `<id>` in a header value (Message-ID, In-Reply-To, References), in order."""
    return _MSG_ID.findall(value) if value else []


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
        refs = list(self.references)
        if len(refs) > MAX_REFERENCES_OUT:
            refs = refs[:1] + refs[-(MAX_REFERENCES_OUT - 1) :]
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


# -- MIME: runs in a worker thread -----------------------------------------------------------------

MAX_BODY_BYTES = 64 * 1024  # as for `POST /v1/events`; longer bodies are cut (meta.truncated)
MAX_SUBJECT = 1_000
MAX_HTML_CHARS = 2 * 1024 * 1024  # HTML beyond this is cut before it is reduced to text
MAX_NAME = 200
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TRACE = frozenset({"received", "return-path", "delivered-to", "x-original-to", "x-received"})
_BLOCK = frozenset(("p", "div", "tr", "table", "ul", "ol", "blockquote", "pre", "hr"))
_BLOCK |= {"h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header", "footer", "dd", "dt"}
_HIDDEN = frozenset({"script", "style", "head", "title", "template", "noscript"})


class OwnAddress(Exception):
    """Raised when a message comes from one of our own support addresses (a mail loop)."""


class TooManyParts(Exception):
    """Raised when a message has more MIME parts than allowed."""


class ParseTimeout(Exception):
    """Raised when parsing a message ran past its deadline."""


def _check(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise ParseTimeout


def _utf8(text: str) -> str:
    """Text with raw 8-bit bytes (surrogate-escaped by the parser) read as UTF-8, else as
    windows-1252 (old clients put Latin-1 straight into headers)."""
    data = text.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def header(message: EmailMessage, name: str) -> str | None:
    """A header decoded (RFC 2047), or its raw value when decoding fails; never raises."""
    try:
        value: Any = message.get(name)
    except Exception:
        wanted = name.lower()
        value = next((v for k, v in message.raw_items() if k.lower() == wanted), None)
    return None if value is None else _utf8(str(value))


def decode_text(data: bytes, charset: str | None) -> str:
    """Bytes of a text part in its declared charset. Western labels (us-ascii, ISO-8859-1)
    are read as windows-1252, as browsers do; an unknown or wrong label falls back to UTF-8,
    then windows-1252 — some text always comes out."""
    name: str | None = None
    with contextlib.suppress(LookupError, AttributeError):
        name = codecs.lookup((charset or "").strip().strip('"')).name
    if name in (None, "ascii", "iso8859-1", "cp1252"):
        if data.isascii():
            return data.decode("ascii")
        if name in (None, "ascii"):
            with contextlib.suppress(UnicodeDecodeError):
                return data.decode("utf-8")
        return data.decode("cp1252", "replace")
    try:
        return data.decode(name, "replace")
    except Exception:  # a non-text codec (rot13, …) or a broken one
        return data.decode("utf-8", "replace")


class _HtmlText(HTMLParser):
    """HTML → plain text: visible text only, blocks on their own lines, `- ` for list items."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag == "body":
            self.hidden = 0  # an unclosed <head> must not hide the body
        elif tag == "li":
            self.out.append("\n- ")
        elif tag == "br" or tag in _BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCK:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str, deadline: float = float("inf")) -> str:
    """Visible text of an HTML document (entities decoded), checked against `deadline`."""
    parser = _HtmlText()
    for start in range(0, len(html), 65536):
        _check(deadline)
        parser.feed(html[start : start + 65536])
    with contextlib.suppress(Exception):
        parser.close()
    return "".join(parser.out)


def _tidy(text: str, html: bool) -> str:
    """Newlines as \\n, no control characters, no trailing blanks, at most one empty line in a
    row; HTML-derived lines lose their leading blanks too (plain text keeps its indentation)."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [line.strip() if html else line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def _clip(text: str, limit: int) -> tuple[str, bool]:
    data = text.encode()
    if len(data) <= limit:
        return text, False
    return data[:limit].decode("utf-8", "ignore"), True


def _payload(part: EmailMessage) -> bytes:
    """A leaf's content, transfer-decoded (base64, quoted-printable) as far as it goes."""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if isinstance(data, bytes):
        return data
    raw = part.get_payload()
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def _is_attachment(part: EmailMessage) -> bool:
    try:
        disposition, name = part.get_content_disposition(), part.get_filename()
    except Exception:
        disposition, name = None, None
    return disposition == "attachment" or bool(name) or part.get_content_maintype() != "text"


def _leaves(part: EmailMessage, deadline: float) -> list[EmailMessage]:
    """Leaf parts in order; an attached message (message/*) is one leaf, not opened."""
    _check(deadline)
    payload = part.get_payload()
    if not isinstance(payload, list) or part.get_content_maintype() == "message":
        return [part]
    return [
        leaf for sub in payload if isinstance(sub, EmailMessage) for leaf in _leaves(sub, deadline)
    ]


def _body_part(message: EmailMessage, leaves: list[EmailMessage]) -> EmailMessage | None:
    """text/plain preferred, else HTML (RFC 2046 alternatives); else the first inline text."""
    try:
        found = message.get_body(preferencelist=("plain", "html"))
    except Exception:  # malformed structure: fall back to the leaves
        found = None
    if isinstance(found, EmailMessage):
        return found
    for leaf in leaves:
        maintype = leaf.get_content_maintype()
        if maintype == "multipart" or (maintype == "text" and not _is_attachment(leaf)):
            return leaf  # a multipart without parts (no boundary): its text, best effort
    return None


def _attachment(part: EmailMessage) -> dict[str, Any]:
    if part.get_content_maintype() == "message":
        try:
            data = part.as_bytes()
        except Exception:
            data = b""
    else:
        data = _payload(part)
    try:
        name = part.get_filename()
    except Exception:
        name = None
    if name:
        name = _CONTROL.sub("", _utf8(name)).strip()[:MAX_NAME] or None
    return {
        "name": name,
        "type": part.get_content_type()[:MAX_NAME],
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


@dataclass(frozen=True)
class Parsed:
    """A parsed message: what the listener needs of it (headers are read on demand)."""

    message: EmailMessage
    subject: str | None
    body: str
    attachments: list[dict[str, Any]]
    parts: int
    truncated: bool
    fingerprint: bytes  # identifies a message without a Message-ID across deliveries

    def header(self, name: str) -> str | None:
        return header(self.message, name)


def parse_mail(raw: bytes, *, max_parts: int = MAX_PARTS, deadline: float) -> Parsed:
    """Parse `raw` (RFC 5322 bytes); raises TooManyParts or ParseTimeout, else never for
    malformed MIME: what can be read is read."""
    made = 0

    def factory(policy: Any = policy.default) -> EmailMessage:
        nonlocal made
        made += 1
        if made > max_parts + 1:  # + 1: the parser calls the factory once to probe it
            raise TooManyParts
        _check(deadline)
        return EmailMessage(policy)

    message = BytesParser(factory, policy=policy.default).parsebytes(raw)
    leaves = _leaves(message, deadline)
    body_part = _body_part(message, leaves)
    text, truncated, html = "", False, False
    if body_part is not None:
        try:
            charset = body_part.get_content_charset()
        except Exception:
            charset = None
        text = decode_text(_payload(body_part), charset)
        html = body_part.get_content_type() == "text/html"
        if html:
            truncated = len(text) > MAX_HTML_CHARS
            text = html_to_text(text[:MAX_HTML_CHARS], deadline)
    body, cut = _clip(_tidy(text, html), MAX_BODY_BYTES)
    subject = " ".join(_CONTROL.sub(" ", header(message, "Subject") or "").split())
    attachments = []
    for leaf in leaves:
        if leaf is not body_part and _is_attachment(leaf):
            _check(deadline)
            attachments.append(_attachment(leaf))
    fingerprint = hashlib.sha256()
    for name, value in message.raw_items():
        if name.lower() not in _TRACE:
            fingerprint.update(f"{name.lower()}:{value}\n".encode("utf-8", "surrogateescape"))
    split = raw.find(b"\r\n\r\n")
    fingerprint.update(raw[split:] if split >= 0 else raw)
    return Parsed(
        message=message,
        subject=subject[:MAX_SUBJECT] or None,
        body=body,
        attachments=attachments,
        parts=made - 1,
        truncated=truncated or cut,
        fingerprint=fingerprint.digest(),
    )


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


# -- outbound ------------------------------------------------------------------------------------

Annotate = Callable[[str, str, Mapping[str, Any]], Awaitable[bool]]
Send = Callable[..., Awaitable[Any]]


class EmailRefused(ChannelRefused):
    """Raised when a reply cannot be sent by email at all (no address, no sender)."""


def reply_subject(subject: Any, parent: bool = True) -> str:
    """`Re: <subject>` with any existing Re:/Aw: prefixes folded into one; a first mail to a
    customer who never wrote by email (no `parent`) gets no `Re:`."""
    text = _RE_PREFIX.sub("", " ".join(subject.split()) if isinstance(subject, str) else "")
    if not parent:
        return text or "Your enquiry"
    return f"Re: {text}" if text else "Re: your message"


def recipient_of(message: OutboundMessage) -> str | None:
    """Where the reply goes: the customer's Reply-To, else the From of their last mail, else
    any email address linked to the customer."""
    meta = message.reply_meta
    for candidate in (meta.get("reply_to"), meta.get("from"), *message.addresses):
        address = email_address(candidate) if isinstance(candidate, str) else None
        if address is not None:
            return address
    return None


def build_reply(message: OutboundMessage, sender: str, recipient: str) -> EmailMessage:
    """The reply as a MIME message threaded onto the customer's last mail."""
    meta = message.reply_meta
    mail = EmailMessage(policy=policy.SMTP.clone(max_line_length=998))
    mail["From"] = sender
    mail["To"] = recipient
    parent = meta.get("message_id")
    mail["Subject"] = reply_subject(meta.get("subject"), bool(meta))
    mail["Date"] = formatdate(usegmt=True)
    # one reply, one Message-ID, whichever node sends it and however often: a repeat is the
    # same message to the receiving side
    stable = uuid.uuid5(uuid.NAMESPACE_URL, f"{sender}/{message.customer}/{message.interaction}")
    mail["Message-ID"] = f"<{stable.hex}.{message.interaction}@{sender.split('@', 1)[1]}>"
    refs = [r for r in meta.get("references") or () if isinstance(r, str) and _MSG_ID.fullmatch(r)]
    if isinstance(parent, str) and _MSG_ID.fullmatch(parent):
        mail["In-Reply-To"] = parent
        refs = [r for r in refs if r != parent] + [parent]
    if refs:
        if len(refs) > MAX_REFERENCES_OUT:
            refs = refs[:1] + refs[-(MAX_REFERENCES_OUT - 1) :]
        mail["References"] = " ".join(refs)
    mail.set_content(message.body)
    return mail


@dataclass
class EmailPort(OutboundPort):
    """Sends agent replies through the relay. See the module docstring."""

    relay_host: str
    relay_port: int
    from_address: str
    annotate: Annotate
    attempts: int = 4
    backoff_s: float = 1.0  # doubled after each temporary failure
    timeout_s: float = 30.0
    send_mail: Send = aiosmtplib.send
    _pending: set[asyncio.Task[Delivered]] = field(default_factory=set)

    def _ends(self, message: OutboundMessage) -> tuple[str, str]:
        """(sender, recipient), or EmailRefused."""
        recipient = recipient_of(message)
        sender = email_address(self.from_address) or email_address(
            next(iter(message.reply_meta.get("to") or ()), None)
        )
        if recipient is None or sender is None:
            what = "an email address for the customer" if recipient is None else "a sender"
            log.warning("email.unsendable", interaction=message.interaction, missing=what)
            raise EmailRefused(f"no {what}: this reply cannot be emailed")
        return sender, recipient

    def check(self, message: OutboundMessage) -> None:
        self._ends(message)

    async def deliver(self, message: OutboundMessage) -> Delivered:
        mail, sender, recipient = await self._prepare(message)
        return await self._deliver(message, mail, sender, recipient)

    async def send(self, message: OutboundMessage) -> None:
        mail, sender, recipient = await self._prepare(message)
        task = asyncio.create_task(self._deliver(message, mail, sender, recipient))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _prepare(self, message: OutboundMessage) -> tuple[EmailMessage, str, str]:
        sender, recipient = self._ends(message)
        mail = build_reply(message, sender, recipient)
        meta = {
            "message_id": mail["Message-ID"],
            "in_reply_to": mail["In-Reply-To"],
            "to": [recipient],
            "status": "queued",
        }
        # Known before it leaves: a reply to it threads back, however fast it comes.
        if not await self.annotate(message.customer, message.interaction, meta):
            log.warning("email.annotate_missed", interaction=message.interaction)
        return mail, sender, recipient

    async def _deliver(
        self, message: OutboundMessage, mail: EmailMessage, sender: str, recipient: str
    ) -> Delivered:
        delay = self.backoff_s
        status, code = "failed", None
        for attempt in range(1, self.attempts + 1):
            try:
                await self.send_mail(
                    mail,
                    sender=sender,
                    recipients=[recipient],
                    hostname=self.relay_host,
                    port=self.relay_port,
                    timeout=self.timeout_s,
                )
                status = "sent"
                break
            except Exception as exc:
                code = getattr(exc, "code", None)
                temporary = _temporary(exc)
                log.warning(
                    "email.send_failed",
                    interaction=message.interaction,
                    attempt=attempt,
                    code=code,
                    error=type(exc).__name__,
                    temporary=temporary,
                )
                if not temporary or attempt == self.attempts:
                    break
                await asyncio.sleep(delay)
                delay *= 2
        with contextlib.suppress(Exception):
            extra: dict[str, Any] = {"status": status}
            if status == "failed" and isinstance(code, int):
                extra["smtp_code"] = code
            await self.annotate(message.customer, message.interaction, extra)
        log.info("email.outbound", interaction=message.interaction, status=status)
        return Delivered(status, None if status == "sent" else f"smtp_{code or 'unreachable'}")

    async def close(self, drain_s: float = 5.0) -> None:
        """Let sends in flight finish (bounded), then cancel the rest."""
        pending = list(self._pending)
        if not pending:
            return
        _done, late = await asyncio.wait(pending, timeout=drain_s)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _temporary(exc: Exception) -> bool:
    """4xx replies, timeouts and lost connections are worth another try; 5xx are not."""
    if isinstance(exc, aiosmtplib.SMTPNotSupported):  # e.g. SMTPUTF8: no retry will help
        return False
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return all(400 <= r.code < 500 for r in exc.recipients)
    code = getattr(exc, "code", None)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and isinstance(code, int):
        return 400 <= code < 500
    return isinstance(exc, aiosmtplib.SMTPException | OSError | TimeoutError)
