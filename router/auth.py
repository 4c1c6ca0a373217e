"""Tokens and signatures: JWT (HS256) for agents and ops, HMAC-SHA256 for adapters.

Tier, id and role come from verified claims only — never from anything a client says later.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

import jwt
from multidict import CIMultiDictProxy

from channels.base import SIGNATURE_HEADER as SIGNATURE_HEADER  # re-exported for ingest
from channels.base import sign as sign
from queues.args import MAX_ID
from queues.errors import Invalid
from queues.policy import CHANNELS, TIERS
from queues.skills import check_skills
from router.identity import AgentIdentity

ROLES = ("agent", "supervisor", "ops")


class AuthError(Exception):
    """Raised when a token or signature is refused; `code` is unauthorized or forbidden."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def verify_token(token: str, secret: str) -> AgentIdentity:
    """Decode and check an HS256 token; the claims become the identity."""
    if not secret:
        raise AuthError("unauthorized", "the server has no JWT secret configured")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["sub", "exp"]}
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("unauthorized", "token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError("unauthorized", "invalid token") from exc
    return identity_from_claims(claims)


def identity_from_claims(claims: Mapping[str, Any]) -> AgentIdentity:
    """Validate claim shapes; a token with a bad tier or role is refused, not guessed."""
    sub, tier, role = claims.get("sub"), claims.get("tier"), claims.get("role", "agent")
    if not isinstance(sub, str) or not sub or len(sub) > MAX_ID or ":" in sub:
        # ':' is kept for the server's own outbox names (chat:visitor:…)
        raise AuthError("unauthorized", f"token sub must be 1-{MAX_ID} characters without ':'")
    if role not in ROLES:
        raise AuthError("unauthorized", f"token role must be one of {', '.join(ROLES)}")
    if tier not in TIERS:
        raise AuthError("unauthorized", f"token tier must be one of {', '.join(TIERS)}")
    try:
        skills = check_skills(claims.get("skills"))
    except Invalid as exc:
        raise AuthError("unauthorized", f"token skills: {exc.message}") from None
    capacity = claims.get("capacity")
    if capacity is not None and (
        not isinstance(capacity, dict)
        or not all(
            c in CHANNELS and isinstance(n, int) and not isinstance(n, bool) and n >= 0
            for c, n in capacity.items()
        )
    ):
        raise AuthError("unauthorized", "token capacity must map channels to integers >= 0")
    endpoint = claims.get("endpoint")
    name = claims.get("name")
    return AgentIdentity(
        id=sub,
        tier=str(tier),
        name=name if isinstance(name, str) else sub,
        role=str(role),
        skills=skills,
        capacity=dict(capacity) if capacity is not None else None,
        endpoint=endpoint if isinstance(endpoint, str) else None,
    )


def subprotocol_token(headers: CIMultiDictProxy[str]) -> str | None:
    """The token a browser offers as the WebSocket subprotocol `bearer.<JWT>` (it can set no
    Authorization header on a WebSocket, and a token in a URL can end up in logs)."""
    for offered in headers.getall("Sec-WebSocket-Protocol", []):
        for protocol in offered.split(","):
            name, dot, token = protocol.strip().partition(".")
            if dot and name.lower() == "bearer" and token:
                return str(token)
    return None


def signature_ok(body: bytes, header: str | None, secret: str) -> bool:
    """Constant-time check of `X-Omniroute-Signature` over the raw body."""
    if not secret or not header:
        return False
    return hmac.compare_digest(sign(body, secret).encode(), header.strip().encode())
