"""The chat channel's rules, without sockets: who a visitor is, what a widget may send, and the
outbound port that puts agent replies where the visitor's socket will find them.

**Identity.** An anonymous visitor is the widget's stable id on a site (`?site=S&visitor=V`,
each 1-64 of `[A-Za-z0-9_-]`); its address is `visitor:V`, which the store resolves to a
customer like any phone number. A logged-in customer comes with a visitor token (JWT HS256,
`OMNIROUTE_VISITOR_SECRET`): `sub` is the customer id, `site` the site; its address is
`visitor:@SUB`. The `@` cannot occur in an anonymous id, so no anonymous visitor can pose as a
logged-in customer by choosing `visitor=SUB`. Optional claims `phone` (E.164) and `email` (one
string or a list of up to 5 each) are addresses the site vouches for: they are linked to the
customer, so an SMS, a mail or a call from them joins the same customer.

An anonymous visitor id is a bearer secret: whoever knows it reads that visitor's replies. The
widget must make it random (128 bits or more, e.g. a UUID without dashes) and keep it private.

**Outboxes.** Replies go to one outbox per chat address, `chat:` + address (e.g.
`chat:visitor:7f3a`), through `Store.push` like the agents' outboxes, so they reach a socket on
any node and carry a `seq` the widget can reconnect with (`?since=SEQ`). A customer with several
chat addresses (a visitor id and a login, two sites) gets each reply on every one of them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import jwt
import structlog

from channels.base import MAX_ID, OutboundMessage, OutboundPort

log = structlog.get_logger("omniroute.channels.chat")

MAX_FRAME_BYTES: Final = 64 * 1024  # larger client frames close the socket with 1009
MAX_BODY_CHARS: Final = 4_000
MAX_LINKED: Final = 5  # phone or email claims per token
MAX_REF: Final = 64
VISITOR_PREFIX: Final = "visitor:"
OUTBOX_PREFIX: Final = "chat:"
CLIENT_TYPES: Final = ("message", "ping")

_CODE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tab and newlines are fine
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")

Push = Callable[[Sequence[tuple[str, Mapping[str, Any]]]], Awaitable[Any]]


class ChatRefused(Exception):
    """Raised when a visitor's handshake is refused; `code` is `invalid` or `unauthorized`."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


class ChatInvalid(Exception):
    """Raised when a widget frame breaks the rules; `field` names the culprit."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.field = message, field


@dataclass(frozen=True)
class Visitor:
    """Who is on the other end of a chat socket — from the query or verified token claims."""

    site: str
    address: str  # the sender of their events: visitor:V or visitor:@SUB
    customer: str | None = None  # known up front only with a token
    linked: tuple[str, ...] = ()  # addresses the site vouches for (E.164, lowercase email)

    @property
    def outbox(self) -> str:
        return outbox_key(self.address)

    @property
    def authenticated(self) -> bool:
        return self.customer is not None


def outbox_key(address: str) -> str:
    """The outbox of one chat address (free strings beside agent ids; agents have no `:`)."""
    return OUTBOX_PREFIX + address


def code(value: str | None, field: str) -> str:
    """A site code or visitor id: 1-64 of `[A-Za-z0-9_-]`."""
    if value is None or value == "":
        raise ChatRefused("invalid", f"{field} is required", field)
    if not _CODE.fullmatch(value):
        raise ChatRefused("invalid", f"{field} must be 1 to 64 of A-Z a-z 0-9 _ -", field)
    return value


def anonymous(site: str | None, visitor: str | None) -> Visitor:
    """`?site=S&visitor=V`: an anonymous visitor, named by the widget's stable id."""
    return Visitor(site=code(site, "site"), address=VISITOR_PREFIX + code(visitor, "visitor"))


def from_token(token: str, secret: str, leeway_s: float = 5.0) -> Visitor:
    """`?token=`: a logged-in customer the site vouches for (HS256, `sub` and `site` as the
    contract names them; `exp`, when there, is checked — a token without one is good until
    the secret changes)."""
    if not secret:
        raise ChatRefused("unauthorized", "visitor tokens are not configured on this server")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={"require": ["sub", "site"]},
            leeway=leeway_s,
        )
    except jwt.ExpiredSignatureError as exc:
        raise ChatRefused("unauthorized", "visitor token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise ChatRefused("unauthorized", "invalid visitor token") from exc
    sub = claims["sub"]
    if not isinstance(sub, str) or not 1 <= len(sub) <= MAX_ID or _CONTROL.search(sub):
        raise ChatRefused("unauthorized", f"token sub must be 1 to {MAX_ID} characters")
    site = claims["site"]
    if not isinstance(site, str) or not _CODE.fullmatch(site):
        raise ChatRefused("unauthorized", "token site must be 1 to 64 of A-Z a-z 0-9 _ -")
    emails = [email.lower() for email in _claimed(claims, "email", _EMAIL)]
    linked = [*_claimed(claims, "phone", _E164), *emails]
    return Visitor(
        site=site,
        address=VISITOR_PREFIX + "@" + sub,
        customer=sub,
        linked=tuple(dict.fromkeys(linked)),
    )


def _claimed(claims: Mapping[str, Any], name: str, shape: re.Pattern[str]) -> list[str]:
    value = claims.get(name)
    if value is None:
        return []
    values = [value] if isinstance(value, str) else value
    if (
        not isinstance(values, list)
        or len(values) > MAX_LINKED
        or not all(isinstance(v, str) and shape.fullmatch(v) for v in values)
    ):
        what = "E.164 numbers" if name == "phone" else "email addresses"
        raise ChatRefused("unauthorized", f"token {name} must be one or up to 5 {what}")
    return list(values)


# -- widget → server ---------------------------------------------------------------------------


def ref_of(frame: Mapping[str, Any]) -> str | int | None:
    """The frame's optional `ref` (echoed in the answer): a short string or an integer."""
    ref = frame.get("ref")
    if ref is None or (isinstance(ref, str) and len(ref) <= MAX_REF):
        return ref
    if isinstance(ref, int) and not isinstance(ref, bool) and abs(ref) < 2**53:
        return ref
    raise ChatInvalid(f"ref must be a string of at most {MAX_REF} characters or an integer", "ref")


def kind_of(frame: Mapping[str, Any]) -> str:
    """The frame's `type`, one of `CLIENT_TYPES`."""
    kind = frame.get("type")
    if kind not in CLIENT_TYPES:
        raise ChatInvalid(f"type must be one of {', '.join(CLIENT_TYPES)}", "type")
    return str(kind)


def message_body(frame: Mapping[str, Any]) -> str:
    """The `body` of a `message` frame: 1-4,000 characters, not blank, no control characters
    but tab and newlines."""
    body = frame.get("body")
    if not isinstance(body, str) or not body.strip() or len(body) > MAX_BODY_CHARS:
        raise ChatInvalid(f"body must be 1 to {MAX_BODY_CHARS} characters of text", "body")
    if _BODY_CONTROL.search(body):
        raise ChatInvalid("body must not contain control characters", "body")
    return body


# -- server → widget ---------------------------------------------------------------------------


def iso_now(clock: Callable[[], float] = time.time) -> str:
    stamp = datetime.fromtimestamp(clock(), UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def reply_frame(message: OutboundMessage, at: str) -> dict[str, Any]:
    """An agent reply as the widget sees it (`seq` is added on delivery)."""
    return {
        "type": "message",
        "id": message.interaction,
        "body": message.body,
        "from": "agent",
        "at": at,
        "customer": message.customer,
    }


class ChatPort(OutboundPort):
    """Puts agent replies in the outbox of every chat address of the customer.

    `push` is `Store.push`: the frames are durable as far as the store is, and every node's
    chat sockets for those addresses are woken. Without a chat address (a customer who never
    chatted) the reply waits in the outbox of their logged-in address, `visitor:@CUSTOMER`.
    """

    def __init__(self, push: Push, clock: Callable[[], float] = time.time) -> None:
        self.push = push
        self.clock = clock

    async def send(self, message: OutboundMessage) -> None:
        targets = [a for a in message.addresses if a.startswith(VISITOR_PREFIX)]
        if not targets:
            targets = [VISITOR_PREFIX + "@" + message.customer]
        frame = reply_frame(message, iso_now(self.clock))
        await self.push([(outbox_key(address), frame) for address in targets])
        log.info(
            "chat.reply_queued",
            conversation=message.conversation,
            interaction=message.interaction,
            outboxes=len(targets),
        )
