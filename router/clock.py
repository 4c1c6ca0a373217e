"""Times as the server writes them: RFC 3339 in UTC with milliseconds, e.g.
`2026-11-23T12:00:00.000Z` — one format, so every time on the wire looks alike and sorts as text.

Pure (the standard library's `datetime` only), so any module of `router` may import it.
`channels/` and `queues/` may not import `router`; `channels.chat.iso_now` and
`queues.explain.iso_ms` write the same format for them.
"""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(seconds: float) -> str:
    """A Unix time in seconds → `2026-11-23T12:00:00.000Z` (milliseconds truncated, not rounded)."""
    return rfc3339_moment(datetime.fromtimestamp(seconds, UTC))


def rfc3339_moment(moment: datetime) -> str:
    """An aware datetime already in UTC → `2026-11-23T12:00:00.000Z`."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
