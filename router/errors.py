"""Wire error codes → HTTP status and WebSocket close codes, in one table; the edge's errors.

The errors raised on input from outside live here too (`ProtocolError` and its kinds: the
codecs in `router/codec.py` raise some, event validation in `router/protocol.py` others), and
`ServiceError`, the refusal of an agent's request by the Service and its parts; they import
them from here, below any of them. Imports nothing of `router`.

Close codes follow one rule a client can act on without knowing each code:
4000-4499 "reconnect (after a back-off)", 4500-4999 "do not reconnect with these credentials".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# code → HTTP status
HTTP_STATUS: Final[dict[str, int]] = {
    "invalid": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "timeout": 408,  # a request body that did not arrive in time
    "conflict": 409,
    "expired": 410,
    "too_large": 413,
    "rate_limited": 429,
    "unavailable": 503,
    "internal": 500,
}

# WebSocket close codes (RFC 6455 1009 for oversized frames stays standard)
CLOSE_DRAINING: Final = 4000  # the node is shutting down: reconnect (to any node)
CLOSE_HEARTBEAT: Final = 4001  # no pong in time: reconnect
CLOSE_RATE_LIMITED: Final = 4029  # too many frames: reconnect after a back-off
CLOSE_REPLACED: Final = 4002  # reserved: a newer session took over
CLOSE_UNAUTHORIZED: Final = 4501  # bad or expired token: get a new one first
CLOSE_FORBIDDEN: Final = 4503  # origin or role not allowed: do not retry
CLOSE_PROTOCOL: Final = 4502  # no acceptable subprotocol / broken framing: do not retry
CLOSE_TOO_BIG: Final = 1009


def http_status(code: str) -> int:
    """HTTP status of a wire error code (500 for an unknown one)."""
    return HTTP_STATUS.get(code, 500)


def error_body(code: str, message: str, field: str | None = None) -> dict[str, object]:
    """The contract's error shape: {"error": {"code", "message", "field"}}."""
    return {"error": {"code": code, "message": message, "field": field}}


class ServiceError(Exception):
    """Raised when an agent's request is refused; `code` is a wire error code, `details` the
    extra keys of the `error` frame (`field`, the current `customer`)."""

    def __init__(self, code: str, message: str, details: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = dict(details or {})


class Overloaded(Exception):
    """Raised when ingest is refused because routing is too far behind (`[events]
    max_backlog_s`): nothing was stored; the adapter should retry after `retry_after_s`."""

    def __init__(self, behind_s: float, limit_s: float, retry_after_s: int = 1) -> None:
        wait = (
            "routing has stalled"
            if behind_s == float("inf")
            else f"an event accepted now would wait {behind_s:.1f} s"
        )
        super().__init__(f"{wait} (the bound is {limit_s:g} s); retry later")
        self.behind_s = behind_s
        self.limit_s = limit_s
        self.retry_after_s = retry_after_s


def unreachable(exc: BaseException) -> bool:
    """The store or the engine could not be reached (Redis down, a socket timed out): the
    request may succeed on a retry, so it is answered `unavailable`, not `internal`."""
    return isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError))


class ProtocolError(ValueError):
    """Raised when input from outside is malformed; `field` says where (None: the whole body).

    `log_field` is `field` with any part taken from the input (an unknown key's name) masked,
    so it can be logged next to ids.
    """

    def __init__(self, message: str, field: str | None = None, log_field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.log_field = field if log_field is None else log_field


class DecodeError(ProtocolError):
    """Raised when bytes are not one well-formed, bounded document of the codec."""


class UnsupportedMediaType(ProtocolError):
    """Raised when a body's content type is neither JSON nor msgpack (HTTP 415)."""


class BadEvent(ProtocolError):
    """Raised when an ingest body, or one event in it, breaks the contract (HTTP 400)."""
