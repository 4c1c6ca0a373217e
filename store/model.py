"""The store's vocabulary and shapes: the events it ingests, the records it keeps, what its
methods return. Frozen dataclasses, so a caller can hold one without the store changing it.

Imports nothing of this repository: `store.base`, both backends and `router` all speak these.
The channels and client groups an event may name are the routing engine's (`queues.policy`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

PROFILE_FIELDS = (
    "client_group",
    "coins",
    "top_up",
    "birthday",
    "gender",
    "phone_verified",
    "zip",
    "city",
    "state",
    "country",
    "hot",
    "online",
    "last_ip",
    "signup_date",
)
PROFILE_FIELD_SET: Final = frozenset(PROFILE_FIELDS)  # for membership on the hot path
# the customer fields an agent may edit, each with the most characters it holds
EDITABLE_FIELDS: Final = {"first_name": 200, "residence_city": 200, "job": 200, "vcard": 20_000}
CONVERSATION_STATES = ("queued", "offered", "assigned", "wrapup", "closed")
HELD_STATES = ("offered", "assigned", "wrapup")  # the states in which a conversation has a holder
ANNOTATE_WINDOW = 200
EVENT_TYPES: Final = ("message", "call.offered", "call.answered", "call.ended")
# what the store takes besides: a campaign's claimed contact (router.campaigns), never an adapter's
STORE_EVENT_TYPES: Final = (*EVENT_TYPES, "campaign.contact")


def edit_refusal(name: Any, value: Any) -> str | None:
    """Why an agent may not set the customer field `name` to `value`: "is not editable", or
    "must be text" (a string of at most the field's bound); None when it may.

    The one rule for agent edits. The desktop's frame check (`router.agent_fields`), the
    Service and the store each apply it and raise it as their own error.
    """
    if not isinstance(name, str) or name not in EDITABLE_FIELDS:
        return "is not editable"
    if not isinstance(value, str) or len(value) > EDITABLE_FIELDS[name]:
        return "must be text"
    return None


@dataclass(frozen=True)
class InboundEvent:
    """One validated adapter event (see DESIGN.md, `POST /v1/events`)."""

    id: str
    type: str  # message | call.offered | call.answered | call.ended
    channel: str  # chat | sms | email | voice
    sender: str  # the customer's address ("from"), normalised by the channel
    customer_id: str | None = None
    site: str | None = None
    profile: Mapping[str, Any] = field(default_factory=dict)
    subject: str | None = None
    body: str | None = None
    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    occurred_at: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)  # channel extras (call_id, to, …)
    skills: Mapping[str, int] = field(default_factory=dict)  # what its work asks for (1-5)


@dataclass(frozen=True)
class Ingested:
    """What `ingest` decided for one event."""

    event: str
    conversation: str
    customer: str
    duplicate: bool


@dataclass(frozen=True)
class LogEntry:
    """One entry of the durable event log, as a consumer reads it."""

    entry_id: str
    event: InboundEvent
    conversation: str
    customer: str
    reclaimed: bool = False  # read before: taken over from a dead node or retried


@dataclass(frozen=True)
class Push:
    """One `Store.push` as a backend stores it: frames for agents, the conversation states they
    announce, the log entries they finish (held by `consumer`), frames for a conversation's
    holder."""

    frames: Sequence[tuple[str, Mapping[str, Any]]]
    states: Sequence[tuple[str, str, str | None]] = ()
    ack: Sequence[str] = ()
    to_holder: Sequence[tuple[str, Mapping[str, Any]]] = ()
    consumer: str | None = None


@dataclass(frozen=True)
class Reply:
    """An agent's reply, before the store keeps it: into which conversation, on which channel,
    what, by whom and when (ms since the epoch)."""

    conversation: str
    channel: str
    body: str
    agent: str
    at_ms: int


@dataclass(frozen=True)
class Interaction:
    """One message or call step in a customer's history."""

    id: str
    conversation: str
    channel: str
    direction: str  # in | out
    at: str  # RFC 3339
    body: str | None = None
    subject: str | None = None
    type: str = "message"
    meta: Mapping[str, Any] = field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        """The `interaction` object of the agent protocol."""
        out: dict[str, Any] = {
            "id": self.id,
            "conversation": self.conversation,
            "channel": self.channel,
            "direction": self.direction,
            "type": self.type,
            "body": self.body,
            "subject": self.subject,
            "at": self.at,
        }
        if self.meta:
            out["meta"] = dict(self.meta)
        return out


@dataclass(frozen=True)
class Customer:
    """A customer: profile fields from events, agent-editable fields, counters, a version."""

    id: str
    version: int
    client_group: str = "normal"
    site: str | None = None
    profile: Mapping[str, Any] = field(default_factory=dict)
    editable: Mapping[str, str] = field(default_factory=dict)
    messages_in: int = 0
    messages_out: int = 0
    addresses: tuple[str, ...] = ()
    open_conversation: str | None = None  # the customer's one open conversation, if any


@dataclass(frozen=True)
class Conversation:
    """One active-or-closed conversation of a customer across every channel."""

    id: str
    customer: str
    state: str  # see CONVERSATION_STATES
    agent: str | None
    channels: tuple[str, ...]
    last_channel: str
    created_at: str
    last_agent: str | None = None  # the agent of the customer's previous conversation


Applied = tuple[Conversation, Customer, Interaction | None, list[Interaction]]
"""What applying a log entry gives: the conversation, the customer, the interaction appended
(the one appended the first time, for an entry applied before) and the history after it."""


@dataclass(frozen=True)
class Job:
    """One piece of outgoing work (an agent's reply to send, a command for the PBX), durable
    from before the agent is told until a node has done it (`router.replies`)."""

    job_id: str
    fields: Mapping[str, Any]
    reclaimed: bool = False  # read before: taken over from a dead node or retried


@dataclass(frozen=True)
class Backlog:
    """The log as ingest's gate sees it (`router.admission`)."""

    unread: int = 0  # accepted entries no consumer has read yet
    oldest_s: float = 0.0  # how long the oldest of them has waited
    read: int | None = None  # entries the consumers have read, ever (None: the store cannot say)


@dataclass(frozen=True)
class Beat:
    """What one `beat` found."""

    fenced: bool = False  # this node's lease had lapsed: it was presumed dead, maybe taken over
    clash: bool = False  # another process holds this node's name
    claimed: int = 0  # log entries and jobs taken over from dead nodes (read first)
    dead: tuple[str, ...] = ()  # nodes found dead
    orphans: tuple[str, ...] = ()  # agents whose every desktop was on a dead node


Frames = list[tuple[int, dict[str, Any]]]
"""(seq, frame with its `seq`) pairs of one outbox, oldest first."""

Wake = Callable[[str, int, Frames], Awaitable[None] | None]
"""A listener: `wake(agent, last_seq, frames)`. `frames` are the frames of that push, so a
listener that has everything before them delivers without reading the outbox; it is empty when
the store does not know what was pushed (e.g. after its wake connection was lost)."""
