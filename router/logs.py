"""Logging: structlog everywhere, JSON lines in production, and never customer content.

The rule (DESIGN.md, "Non-negotiables"): logs carry identifiers — agent, task, conversation,
reservation and event ids, codes, counts, durations — and never message bodies, names,
addresses, numbers, profiles or secrets. Code must not pass them in the first place;
`redact` is the second line: any key known to carry such content has its value replaced by
`"[redacted]"`, however deep it sits in the event.

Ids a client names are free text until omniroute has found them: a transfer's `to_agent`, a
reservation, conversation or customer id in a refused frame may be anything a desktop typed —
an address, a number. `digest_free_ids` (a processor) keeps a value of an id field
(`ID_KEYS`) only when it has the shape of an id omniroute mints (`cv-12`, `cu-3`: two
lower-case letters, a dash, then letters, digits and `_ . : -`, at most 80 characters; or a
reservation's `R17`); any other value,
and every `to_agent`, becomes `"h:" + 12 hex digits`, a keyed BLAKE2b digest (the key is
random per process): lines of one process can be matched to each other, the value cannot be
read back or guessed.

Access logs never print the path as requested, nor the query string (tokens travel in
`?token=`; browsers cannot set headers on a WebSocket). `AccessLogger` logs method, the matched
route's template (`/v1/conversations/{id}/why`, never the id in it; `[unmatched]` for a path no
route serves, which is where a scanner's or a client's typo of `/v1/customers/<address>` lands),
status and duration; a filter on the `aiohttp.access` logger also strips queries from
aiohttp's own format, should it be used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

REDACTED = "[redacted]"

# Keys whose values are (or may be) customer content or secrets. Compared lower-case, with
# "-" read as "_", so `Authorization` and `first-name` are caught too.
SENSITIVE_KEYS = frozenset(
    {
        "body",
        "subject",
        "text",
        "from",
        "sender",
        "to",
        "address",
        "phone",
        "email",
        "name",
        "first_name",
        "residence_city",
        "job",
        "vcard",
        "token",
        "authorization",
        "signature",
        "secret",
        "password",
        "profile",
        "history",
        "payload",
    }
)

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
ACCESS_LOGGER = "aiohttp.access"
MAX_PATH = 200  # a scanner's absurd path is cut, not logged whole
_MAX_DEPTH = 6
_QUERY = re.compile(r"\?[^\s\"']*")

access_log = structlog.get_logger("omniroute.access")

UNMATCHED = "[unmatched]"
# Fields that hold an id a client named; see the module docstring.
ID_KEYS = frozenset({"task", "conversation", "res", "reservation", "customer", "interaction"})
FREE_KEYS = frozenset({"to_agent"})  # always a digest: typed by a person, never minted
_MINTED = re.compile(r"[a-z]{2}-[A-Za-z0-9_.:-]{1,77}|R[0-9]{1,19}")  # cv-12, cu-3, R17
_DIGEST_KEY = os.urandom(16)


def digest(value: object) -> str:
    """`h:` + 12 hex digits of a keyed BLAKE2b of `value` (the key is random per process)."""
    text = str(value).encode("utf-8", "surrogatepass")
    return "h:" + hashlib.blake2b(text, key=_DIGEST_KEY, digest_size=6).hexdigest()


def digest_free_ids(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: id fields whose value is not a minted id become a digest."""
    for key, value in list(event_dict.items()):
        if value is None or (key not in FREE_KEYS and key not in ID_KEYS):
            continue
        if key in FREE_KEYS or not (isinstance(value, str) and _MINTED.fullmatch(value)):
            event_dict[key] = digest(value)
    return event_dict


def route_template(request: BaseRequest) -> str:
    """The template of the route that served `request`, or `UNMATCHED`."""
    match_info = getattr(request, "match_info", None)  # a web.Request; a bare one has none
    resource = match_info.route.resource if match_info is not None else None
    if resource is None:
        return UNMATCHED
    return str(resource.canonical)[:MAX_PATH]


def _sensitive(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in SENSITIVE_KEYS


def _scrub(value: Any, depth: int) -> Any:
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {k: REDACTED if _sensitive(k) else _scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    return value


def redact(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: replace the values of `SENSITIVE_KEYS`, at any nesting depth."""
    for key, value in list(event_dict.items()):
        if _sensitive(key):
            event_dict[key] = REDACTED
        elif isinstance(value, Mapping | list | tuple):
            event_dict[key] = _scrub(value, 1)
    return event_dict


class _NoQuery(logging.Filter):
    """Strips query strings from aiohttp's default access-log lines (request line, Referer)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _QUERY.sub("", record.getMessage())
        record.args = None
        if hasattr(record, "first_request_line"):
            record.first_request_line = _QUERY.sub("", str(record.first_request_line))
        return True


SLOW_REQUEST_S = 1.0  # a request slower than this is logged at info even when it succeeded


class AccessLogger(AbstractAccessLogger):
    """aiohttp access log as a structlog event: method, path (no query), status, duration.

    Refusals and errors (status ≥ 400) and slow requests are logged at info; the rest at debug.

    Use with `web.run_app(..., access_log=logging.getLogger("aiohttp.access"),
    access_log_class=AccessLogger)` or `web.AppRunner(app, access_log_class=AccessLogger)`.
    """

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        # A request that went well and fast is logged at debug: at a thousand events a second
        # one info line per 202 would cost more CPU than routing them (`/metrics` counts them).
        quiet = response.status < 400 and time < SLOW_REQUEST_S
        (access_log.debug if quiet else access_log.info)(
            "http.request",
            method=request.method,
            path=route_template(request),
            status=response.status,
            duration_ms=round(time * 1000, 2),
        )


def configure_logging(
    json: bool | None = None,
    level: str = "info",
    *,
    stream: TextIO | None = None,
    cache: bool = True,
) -> None:
    """Set up structlog and route stdlib logging (aiohttp, asyncio) through the same renderer.

    `json=None` picks JSON lines when the stream is not a terminal, a readable console
    otherwise. `stream` defaults to stderr. `cache=False` lets a later call (tests) take effect
    on loggers already used; production keeps the faster cached loggers.
    """
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    out = stream if stream is not None else sys.stderr
    as_json = json if json is not None else not out.isatty()
    renderer: Any
    if as_json:
        renderer = structlog.processors.JSONRenderer()
        tracebacks: list[Any] = [structlog.processors.format_exc_info]
    else:
        renderer = structlog.dev.ConsoleRenderer()
        tracebacks = []
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
        digest_free_ids,
    ]
    structlog.configure(
        processors=[*shared, *tracebacks, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        # one write per line (message and newline together): workers of `serve --workers`
        # share one stderr, and two writes per line could interleave with another's
        logger_factory=structlog.WriteLoggerFactory(out),
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *tracebacks,
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(LEVELS[level], logging.WARNING))  # libraries: warnings and up
    access = logging.getLogger(ACCESS_LOGGER)
    access.setLevel(LEVELS[level])  # the access log is INFO: on at the default level
    access.filters[:] = [_NoQuery()]
