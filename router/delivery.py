"""Delivery of one agent's outbox to one socket: what comes next, in `seq` order, filtered.

`Delivery` knows what was written last (`last_sent`), takes the frames a wake carries, and
says what to write next: the carried frames when they follow `last_sent` without a gap, else
what `Store.since` replays. Just before a frame is written it applies the **send-time tier
filter**: a frame with customer content passes only while the customer's client group, as the
store knows it now, allows the agent's tier (`Service.visible`, which asks
`Store.client_group`); one that fails becomes `withheld`, so the sequence has no silent gap
and nothing of the customer leaks. The socket handler (`router.agent_session.Session`) owns the
socket, the lock and the closing; this module owns no socket and no task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import structlog

from store.base import Store

log = structlog.get_logger("omniroute.delivery")

Frame = dict[str, Any]
Pairs = Sequence[tuple[int, Mapping[str, Any]]]

# Frame types that always carry customer content; other frames are checked when they carry a
# customer object (`conversation.customer` or `customer`) or an interaction.
FILTERED_TYPES: Final = frozenset(
    {"offer", "assigned", "message", "customer", "alert", "suggestion"}
)
OFFERS_REMEMBERED: Final = 64  # the offers whose accept can read the conversation early


def customer_of(frame: Mapping[str, Any]) -> tuple[str | None, bool]:
    """(customer id, whether the frame carries customer content) as far as the frame says."""
    conversation = frame.get("conversation")
    if isinstance(conversation, Mapping):
        nested = conversation.get("customer")
        if isinstance(nested, Mapping):
            found = nested.get("id")
            return (found if isinstance(found, str) else None), True
        if isinstance(nested, str):
            return nested, True
    customer = frame.get("customer")
    if isinstance(customer, Mapping):
        found = customer.get("id")
        return (found if isinstance(found, str) else None), True
    # An interaction (a message body) is customer content whatever the frame's type.
    carries = frame.get("type") in FILTERED_TYPES or isinstance(frame.get("interaction"), Mapping)
    if isinstance(customer, str):
        return customer, carries
    return None, carries


class Delivery:
    """One socket's view of its agent's outbox (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        agent: str,
        visible: Callable[[str], Awaitable[bool]],
        write: Callable[[Mapping[str, Any]], Awaitable[None]],
    ) -> None:
        self.store, self.agent = store, agent
        self._visible = visible  # may this agent see this customer now (`Service.visible`)
        self._write = write
        self.last_sent = 0
        self._woken: list[tuple[int, Mapping[str, Any]]] = []  # frames the wakes carried
        self._unheard = False  # a wake without frames: read the outbox
        self._offered: dict[str, str] = {}  # reservation → conversation, of offers written

    def woken(self, seq: int, frames: Pairs) -> None:
        """A push reached the agent: keep what it carried (or note that something unheard
        happened)."""
        if frames:
            self._woken.extend(frames)
        elif seq > self.last_sent:
            self._unheard = True

    def carried(self) -> list[tuple[int, Mapping[str, Any]]] | None:
        """The frames the wakes brought since the last call, when they follow `last_sent`
        without a gap; None when the outbox must be read instead."""
        woken, self._woken = self._woken, []
        unheard, self._unheard = self._unheard, False
        fresh = [(seq, frame) for seq, frame in woken if seq > self.last_sent]
        expected = self.last_sent + 1
        for seq, _frame in fresh:
            if seq != expected:
                return None
            expected += 1
        return None if unheard else fresh

    async def since(self) -> tuple[list[tuple[int, Frame]], bool]:
        """The outbox after `last_sent`, and whether nothing after it was trimmed."""
        return await self.store.since(self.agent, self.last_sent)

    async def deliver(self, frames: Pairs) -> None:
        """Write `frames` after `last_sent`, in order, each through the tier filter."""
        for seq, stored in frames:
            if seq <= self.last_sent:
                continue
            frame = {**stored, "seq": seq}
            if not await self.may_see(frame):
                withheld: Frame = {"type": "withheld", "seq": seq, "reason": "reclassified"}
                if stored.get("ref") is not None:
                    withheld["ref"] = stored["ref"]
                frame = withheld
            await self._write(frame)
            self.last_sent = seq
            if frame.get("type") == "offer":
                self._remember_offer(frame)

    def offered_conversation(self, reservation: str) -> str | None:
        """The conversation of an offer this socket wrote (once): its accept reads it early."""
        return self._offered.pop(reservation, None)

    def _remember_offer(self, frame: Mapping[str, Any]) -> None:
        conversation = frame.get("conversation")
        reservation = frame.get("reservation")
        if isinstance(conversation, Mapping) and isinstance(reservation, str):
            if len(self._offered) >= OFFERS_REMEMBERED:
                self._offered.pop(next(iter(self._offered)))
            self._offered[reservation] = str(conversation.get("id"))

    async def may_see(self, frame: Mapping[str, Any]) -> bool:
        """The tier filter, with the customer's group as it is now; content that cannot be
        attributed to a customer fails closed."""
        customer, content = customer_of(frame)
        if not content:
            return True
        if customer is None and isinstance(frame.get("conversation"), str):
            found = await self.store.conversation(frame["conversation"])
            customer = found.customer if found is not None else None
        if customer is None:
            log.warning("delivery.unattributed", agent=self.agent, type=frame.get("type"))
            return False
        return await self._visible(customer)
