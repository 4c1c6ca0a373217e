"""Reading one email: RFC 5322/MIME bytes into a `Parsed` message, and its header values.

`parse_mail` parses the raw bytes under a deadline and a cap on MIME parts (`ParseTimeout`,
`TooManyParts`); anything else malformed is read as far as it goes, never raised. It takes the
text body (text/plain preferred, HTML reduced to visible text, charsets decoded, cut at the
event contract's bound) and describes attachments by name, type, size and sha256 only.
Addresses come from the address part of a header as `email.headerregistry` reads it, never
from a display name; a header that is missing, repeated or defective is no address.

This runs in a worker thread of the SMTP listener (`channels.email.inbound`), which decides
what a message means for omniroute (which support addresses, which `Mail` id); the outbound
side (`channels.email.outbound`) reuses the address and Message-ID readers. It imports only
the standard library: no SMTP, no sockets, no logs (a message's content never reaches them).
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email import errors, policy
from email.message import EmailMessage
from email.parser import BytesParser
from html.parser import HTMLParser
from typing import Any

MAX_PARTS = 100  # MIME entities per message, the message itself included
MAX_REFERENCES_OUT = 20  # References we keep and send: the first and the newest ones

_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\"]+")
MESSAGE_ID = re.compile(r"<[^<>\s\x00-\x1f\x7f]{1,996}>")


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
    return MESSAGE_ID.findall(value) if value else []


def clip_references(refs: Sequence[str]) -> list[str]:
    """A References chain cut to `MAX_REFERENCES_OUT` ids: the first (the thread's root) and
    the newest, which is what mail clients thread on; a long chain is no use beyond that."""
    out = list(refs)
    if len(out) > MAX_REFERENCES_OUT:
        out = out[:1] + out[-(MAX_REFERENCES_OUT - 1) :]
    return out


# -- MIME ------------------------------------------------------------------------------------------

MAX_BODY_BYTES = 64 * 1024  # as for `POST /v1/events`; longer bodies are cut (meta.truncated)
MAX_SUBJECT = 1_000
MAX_HTML_CHARS = 2 * 1024 * 1024  # HTML beyond this is cut before it is reduced to text
MAX_NAME = 200
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TRACE = frozenset({"received", "return-path", "delivered-to", "x-original-to", "x-received"})
_BLOCK = frozenset(("p", "div", "tr", "table", "ul", "ol", "blockquote", "pre", "hr"))
_BLOCK |= {"h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header", "footer", "dd", "dt"}
_HIDDEN = frozenset({"script", "style", "head", "title", "template", "noscript"})


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
