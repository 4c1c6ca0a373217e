"""Mail out: `EmailPort` sends agents' replies through the SMTP relay, threaded.

A reply answers the customer's last mail: `Re:` subject, a Message-ID of its own on the
sender's domain (stable per reply, so a repeat is the same message), In-Reply-To and References
so the customer's mail client threads it. It goes to the customer's Reply-To, else the From of
that mail (addresses as `channels.email.parse` reads them), else an email address linked to the
customer. `EmailPort` records the Message-ID on the outbound interaction (`annotate`) before
sending, so an answer to it threads back, and sends in the background with bounded retries on
temporary failures (`channels.retry`); the agent's request never waits for the relay.

Imports `channels.base`, `channels.email.parse`, `channels.retry` and aiosmtplib; never
`router`. Logs carry ids and counts only.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Final

import aiosmtplib
import structlog

from channels.base import ChannelRefused, Delivered, OutboundMessage, OutboundPort
from channels.email.parse import MESSAGE_ID, clip_references, email_address
from channels.retry import Backoff

log = structlog.get_logger("omniroute.channels.email")

_RE_PREFIX = re.compile(r"^\s*((re|aw|antw|sv|vs)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)

Annotate = Callable[[str, str, Mapping[str, Any]], Awaitable[bool]]
Send = Callable[..., Awaitable[Any]]

# 4 tries, waiting 1 s, then 2 s, then 4 s after temporary failures (no cap, no jitter).
RELAY_BACKOFF: Final = Backoff(tries=4, base_s=1.0)


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
    refs = [
        r for r in meta.get("references") or () if isinstance(r, str) and MESSAGE_ID.fullmatch(r)
    ]
    if isinstance(parent, str) and MESSAGE_ID.fullmatch(parent):
        mail["In-Reply-To"] = parent
        refs = [r for r in refs if r != parent] + [parent]
    if refs:
        mail["References"] = " ".join(clip_references(refs))
    mail.set_content(message.body)
    return mail


@dataclass
class EmailPort(OutboundPort):
    """Sends agent replies through the relay. See the module docstring."""

    relay_host: str
    relay_port: int
    from_address: str
    annotate: Annotate
    backoff: Backoff = RELAY_BACKOFF
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
        status, code = "failed", None
        async for attempt in self.backoff.attempts():
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
                if not temporary:
                    break
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
