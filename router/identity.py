"""Who is on the other end of a socket: the identity a verified token gives (router.auth makes
it, the Service and the socket handlers use it). No imports of the server's modules: every
layer may depend on it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AgentIdentity:
    """Who is on the other end of a desktop socket — from verified token claims only."""

    id: str
    tier: str
    name: str
    role: str = "agent"  # agent | supervisor | ops
    skills: Mapping[str, int] = field(default_factory=dict)  # name → proficiency 1-5
    capacity: Mapping[str, int] | None = None
    endpoint: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
