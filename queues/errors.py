"""Routing errors. Each carries the wire code the router maps to a frame or HTTP status.

Also `in_place`: how a `*_many` call made one step at a time gives each refusal in its place
(the routing engine's and the store's, each with its own error class).
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import TypeVar

T = TypeVar("T")
E = TypeVar("E", bound=Exception)


class RoutingError(Exception):
    """Raised when a routing operation is refused; nothing was changed."""

    code = "invalid"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Invalid(RoutingError):
    """Raised when an argument is malformed (unknown tier, channel, group, empty id)."""

    code = "invalid"


class NotFound(RoutingError):
    """Raised when the task, agent or reservation named does not exist (any more)."""

    code = "not_found"


class Forbidden(RoutingError):
    """Raised when the hard tier filter or ownership forbids the operation."""

    code = "forbidden"


class Conflict(RoutingError):
    """Raised when the operation does not fit the current state (busy agent, answered task)."""

    code = "conflict"


class Expired(RoutingError):
    """Raised when a reservation's deadline has passed; the next tick re-queues its task."""

    code = "expired"


# The one table of codes: a Redis script's refusal {err = code} is raised as BY_CODE[code]
# (`queues.redis.REFUSALS`), and the router maps `code` to its wire codes.
BY_CODE: dict[str, type[RoutingError]] = {
    cls.code: cls for cls in (Invalid, NotFound, Forbidden, Conflict, Expired)
}


async def in_place(steps: Iterable[Awaitable[T]], refusal: type[E]) -> list[T | E]:
    """Await each step in order, each on its own; one that raises `refusal` gives that error
    in its place and the others go ahead (what Redis answers for a pipeline of scripts)."""
    out: list[T | E] = []
    for step in steps:
        try:
            out.append(await step)
        except refusal as exc:
            out.append(exc)
    return out
