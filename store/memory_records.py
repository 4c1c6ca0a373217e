"""The memory store's mutable records — a customer with its history, a conversation, what an
event id or Message-ID was placed in — and the frozen views (`store.model`) they hand out.

Private to `store.memory`; may import `store.model` only.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from store.model import Conversation, Customer, Interaction


@dataclass
class CustomerRecord:
    """A customer as the memory store keeps it: `Customer`'s fields, last agent and history."""

    id: str
    version: int = 1
    group: str = "normal"
    site: str | None = None
    profile: dict[str, Any] = field(default_factory=dict)
    editable: dict[str, str] = field(default_factory=dict)
    messages_in: int = 0
    messages_out: int = 0
    addresses: list[str] = field(default_factory=list)
    open: str | None = None
    last_agent: str | None = None
    history: list[Interaction] = field(default_factory=list)

    def view(self) -> Customer:
        return Customer(
            id=self.id,
            version=self.version,
            client_group=self.group,
            site=self.site,
            profile=dict(self.profile),
            editable=dict(self.editable),
            messages_in=self.messages_in,
            messages_out=self.messages_out,
            addresses=tuple(self.addresses),
            open_conversation=self.open,
        )


@dataclass
class ConversationRecord:
    """A conversation as the memory store keeps it; `channels` ends with the last channel."""

    id: str
    customer: str
    channels: list[str]
    created_at: str
    last_agent: str | None
    state: str = "queued"
    agent: str | None = None

    def view(self) -> Conversation:
        return Conversation(
            id=self.id,
            customer=self.customer,
            state=self.state,
            agent=self.agent,
            channels=tuple(self.channels),
            last_channel=self.channels[-1],
            created_at=self.created_at,
            last_agent=self.last_agent,
        )


@dataclass
class Seen:
    """What an event id (or Message-ID) was placed in; `interaction` once applied."""

    conversation: str
    customer: str
    expires_ms: int
    interaction: Interaction | None = None  # the same object as in the history


class Expiring:
    """A map whose entries expire in insertion order (every entry lives the same time)."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, Seen] = OrderedDict()

    def get(self, key: str, now_ms: int) -> Seen | None:
        seen = self._items.get(key)
        return seen if seen is not None and seen.expires_ms > now_ms else None

    def put(self, key: str, seen: Seen) -> None:
        self._items.pop(key, None)
        self._items[key] = seen

    def sweep(self, now_ms: int) -> None:
        while self._items:
            key, seen = next(iter(self._items.items()))
            if seen.expires_ms > now_ms:
                return
            del self._items[key]
