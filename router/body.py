"""Request bodies as they were sent: read within a size and a time bound, then decoded.

The server runs with aiohttp's automatic decompression off (`HANDLER_ARGS`, set on the app),
so a handler reads the bytes on the wire. That is what makes the webhook rule hold: the
signature is checked over the bytes received — the compressed body when `Content-Encoding`
is used — and only a signed body is ever decompressed, so an unsigned bomb costs one HMAC.

`read_raw` stops at `limit + 1` bytes (413, the rest is never buffered) and at `timeout_s`
(408: a body trickled a byte at a time holds no handler for long). `decode` undoes
`Content-Encoding` (`gzip`, `x-gzip`, `deflate`, `identity`), never producing more than
`limit` bytes (413): a malformed stream is a 400 `invalid`, an unknown coding 415. The
refusal carries a reason the handler maps to its own answer and log line.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any, Final

from aiohttp import web

# aiohttp's request-handler options (`web.Application(handler_args=...)`): bodies as sent,
# and after an answer given before the body was read (413, 408, 401…) the rest of it is read
# and dropped for at most `lingering_time` (aiohttp: 10 s) before the connection is closed.
LINGER_S: Final = 1.0
HANDLER_ARGS: Final[dict[str, Any]] = {"auto_decompress": False, "lingering_time": LINGER_S}

# coding → zlib window bits (gzip framing, zlib framing as RFC 9110 defines "deflate")
_WBITS: Final = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": 15}


class BodyRefused(Exception):
    """Raised when a body cannot be read or decoded; `reason` is one of `too_large`,
    `timeout`, `unsupported_encoding`, `bad_encoding`."""

    def __init__(self, reason: str, message: str, size: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.size = size  # bytes read before refusing, when reading was cut off


async def read_raw(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """The body's bytes as received; `BodyRefused` past `limit` bytes or `timeout_s`."""
    message = f"the body exceeds {limit} bytes"
    if request.content_length is not None and request.content_length > limit:
        raise BodyRefused("too_large", message)
    body = bytearray()

    async def read() -> None:
        while chunk := await request.content.read(limit + 1 - len(body)):
            body.extend(chunk)
            if len(body) > limit:
                raise BodyRefused("too_large", message, len(body))

    try:
        if request.content.is_eof():  # the whole body is here already: reading cannot wait
            await read()
        else:
            async with asyncio.timeout(timeout_s):
                await read()
    except TimeoutError:
        message = f"the body did not arrive within {timeout_s:g} s"
        raise BodyRefused("timeout", message, len(body)) from None
    return bytes(body)


def codings(header: str | None) -> list[str]:
    """The codings of a `Content-Encoding` header, in the order they were applied."""
    if not header:
        return []
    names = [part.strip().lower() for part in header.split(",")]
    return [name for name in names if name and name != "identity"]


def check_codings(header: str | None) -> None:
    """`BodyRefused("unsupported_encoding")` unless the body is plain or in one known coding."""
    names = codings(header)
    if len(names) > 1 or any(name not in _WBITS for name in names):
        raise BodyRefused(
            "unsupported_encoding",
            "Content-Encoding must be identity, gzip or deflate (one coding at most)",
        )


def decode(raw: bytes, header: str | None, limit: int) -> bytes:
    """`raw` with its `Content-Encoding` undone, at most `limit` bytes; else `BodyRefused`."""
    check_codings(header)
    names = codings(header)
    if not names:
        return raw
    inflater = zlib.decompressobj(_WBITS[names[0]])
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise BodyRefused("bad_encoding", f"the body is not valid {names[0]} data") from None
    if len(out) > limit:
        raise BodyRefused("too_large", f"the decoded body exceeds {limit} bytes")
    if not inflater.eof or inflater.unused_data:
        raise BodyRefused("bad_encoding", f"the body is not one complete {names[0]} stream")
    return out
