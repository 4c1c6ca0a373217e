"""Routing errors. Each carries the wire code the router maps to a frame or HTTP status."""

from __future__ import annotations


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
