"""The server's core: events in, routing decisions, frames out. No sockets here.

`Service` joins the routing engine (`queues`), the store (`router.store`) and the outbound
channel ports (`channels.base`). The HTTP and WebSocket modules (`ingest.py`, `agent_ws.py`,
`ops.py`) decode what arrives and call it; it answers with data and pushes frames to agents'
outboxes, from where every node's sessions deliver them. See `docs/server.md`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AgentIdentity:
    """Who is on the other end of a desktop socket — from verified token claims only."""

    id: str
    tier: str
    name: str
    role: str = "agent"  # agent | supervisor | ops
    skills: tuple[str, ...] = ()
    capacity: Mapping[str, int] | None = None
    endpoint: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class ServiceError(Exception):
    """Raised when an agent's request is refused; `code` is a wire error code."""

    def __init__(self, code: str, message: str, details: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = dict(details or {})


def frames_for(*pairs: tuple[str, Mapping[str, Any]]) -> Sequence[tuple[str, Mapping[str, Any]]]:
    """A batch of (agent, frame) pairs, for `Store.push`."""
    return pairs
