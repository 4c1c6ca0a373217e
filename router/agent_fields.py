"""The fields of the desktop's frames, checked at the edge: each checker returns the value or
raises `Invalid` naming the field, which the session answers with `error` {code: invalid, field}.

Pure functions over decoded frames (no socket, no I/O), so the agent's commands read as
"take these fields, call the Service" (`router.agent_commands` imports this module as
`check`).
Imports `store.model`, for the rule of the customer fields an agent may edit, and the
contract's bound on ids (`queues.args.MAX_ID`: what the engine takes is what a client may send).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from queues.args import MAX_ID
from store.model import EDITABLE_FIELDS, edit_refusal

Frame = dict[str, Any]

MAX_FRAME_BYTES: Final = 64 * 1024  # larger client frames close the socket with 1009


class Invalid(Exception):
    """Raised when a client frame is malformed; `field` names the culprit."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.field = message, field


def text(frame: Frame, name: str, optional: bool = False, limit: int = MAX_ID) -> str | None:
    """A non-empty string of at most `limit` characters (or None, when optional and absent)."""
    value = frame.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        need = f"a non-empty string of at most {limit} characters"
        raise Invalid(f"{name} {'is missing' if value is None else 'must be ' + need}", name)
    return value


def need(frame: Frame, name: str) -> str:
    """A required id: `text` that cannot be None."""
    value = text(frame, name)
    assert value is not None
    return value


def choice(frame: Frame, name: str, allowed: Sequence[str], optional: bool = False) -> str | None:
    """One of `allowed` (or None, when optional and absent)."""
    value = frame.get(name)
    if value is None and optional:
        return None
    if value not in allowed:
        raise Invalid(f"{name} must be one of {', '.join(allowed)}", name)
    return str(value)


def ref(frame: Frame) -> Any:
    """The client's `ref`, echoed on the answer: absent, a short string or a safe integer."""
    value = frame.get("ref")
    ok = value is None or (isinstance(value, str) and len(value) <= MAX_ID)
    ok = ok or (isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**53)
    if not ok:
        raise Invalid(f"ref must be a string of at most {MAX_ID} characters or an integer", "ref")
    return value


def frame_type(frame: Frame) -> str:
    """The frame's `type`, a string (whether a handler knows it is the dispatcher's question)."""
    kind = frame.get("type")
    if not isinstance(kind, str):
        raise Invalid("type is missing" if kind is None else "type must be a string", "type")
    return kind


def version(frame: Frame) -> int:
    """`customer.update`'s `version`: the customer version the edit was made against."""
    value = frame.get("version")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Invalid("version must be an integer >= 0", "version")
    return value


def editable_fields(frame: Frame) -> dict[str, str]:
    """`customer.update`'s `fields`: a non-empty object of editable fields, each text within
    its bound."""
    fields = frame.get("fields")
    if not isinstance(fields, dict) or not fields:
        raise Invalid(
            f"fields must be an object with any of {', '.join(EDITABLE_FIELDS)}", "fields"
        )
    for name, value in fields.items():
        refused = edit_refusal(name, value)
        if refused == "is not editable":
            raise Invalid(f"{str(name)[:MAX_ID]} is not editable", f"fields.{name}")
        if refused:
            raise Invalid(f"fields.{name} {refused}", f"fields.{name}")
    return fields
