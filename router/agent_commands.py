"""The agent's commands: one handler per client frame type of the desktop socket, and the
table (`HANDLERS`) that `router.agent_session.Session` dispatches through.

A handler checks the frame's fields at the edge (`router.agent_fields`: `invalid` names the
field) and calls the Service, or the part of it that owns the request (`service.replies`,
`service.customers`); the answer reaches the desktop through the outbox. A handler sees only
what `Desk` names of the session it came in on, never the socket.

May import the Service and the pure modules beside it; never `router.agent_session` (which
imports this table) nor aiohttp.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Protocol

from queues.policy import CHANNELS, GROUPS, TIERS
from router import agent_fields as check
from router.agent_fields import MAX_FRAME_BYTES, Frame, Invalid
from router.delivery import Delivery
from router.guidance import OUTCOMES
from router.identity import AgentIdentity
from router.service import Service


class Desk(Protocol):
    """What a command needs of the session it came in on."""

    service: Service
    identity: AgentIdentity
    delivery: Delivery

    async def push(self, frame: Frame) -> None:
        """Answer through the agent's outbox."""


async def on_ping(desk: Desk, frame: Frame, ref: Any) -> None:
    await desk.push({"type": "ack", "ref": ref})


async def on_presence_set(desk: Desk, frame: Frame, ref: Any) -> None:
    state = check.choice(frame, "state", ("available", "away"))
    assert state is not None
    await desk.service.presence(desk.identity, state, ref=ref)


async def on_offer_accept(desk: Desk, frame: Frame, ref: Any) -> None:
    reservation = check.need(frame, "reservation")
    conversation = desk.delivery.offered_conversation(reservation)
    await desk.service.accept(desk.identity, reservation, ref=ref, conversation=conversation)


async def on_offer_reject(desk: Desk, frame: Frame, ref: Any) -> None:
    reservation = check.need(frame, "reservation")
    reason = check.text(frame, "reason", optional=True, limit=500)
    await desk.service.reject(desk.identity, reservation, reason, ref=ref)


async def on_message_send(desk: Desk, frame: Frame, ref: Any) -> None:
    conversation = check.need(frame, "conversation")
    body = check.text(frame, "body", limit=MAX_FRAME_BYTES)
    assert body is not None
    channel = check.choice(frame, "channel", CHANNELS, optional=True)
    await desk.service.replies.send(desk.identity, conversation, body, channel, ref=ref)


async def on_conversation_complete(desk: Desk, frame: Frame, ref: Any) -> None:
    conversation = check.need(frame, "conversation")
    disposition = check.text(frame, "disposition", optional=True, limit=500)
    await desk.service.complete(desk.identity, conversation, disposition, ref=ref)


async def on_wrapup_done(desk: Desk, frame: Frame, ref: Any) -> None:
    await desk.service.wrapup_done(desk.identity, check.need(frame, "conversation"), ref=ref)


async def on_suggestion_outcome(desk: Desk, frame: Frame, ref: Any) -> None:
    conversation = check.need(frame, "conversation")
    offer = check.need(frame, "offer")
    outcome = str(check.choice(frame, "outcome", OUTCOMES))  # required: None is refused
    await desk.service.suggestion_outcome(desk.identity, conversation, offer, outcome, ref=ref)


async def on_conversation_transfer(desk: Desk, frame: Frame, ref: Any) -> None:
    conversation = check.need(frame, "conversation")
    to_agent = check.text(frame, "to_agent", optional=True)
    to_tier = check.choice(frame, "to_tier", TIERS, optional=True)
    if (to_agent is None) == (to_tier is None):
        raise Invalid("give exactly one of to_agent and to_tier", "to_agent")
    await desk.service.transfer(desk.identity, conversation, to_agent, to_tier, ref=ref)


async def on_customer_get(desk: Desk, frame: Frame, ref: Any) -> None:
    await desk.service.customers.get(desk.identity, check.need(frame, "customer"), ref=ref)


async def on_customer_update(desk: Desk, frame: Frame, ref: Any) -> None:
    customer = check.need(frame, "customer")
    version = check.version(frame)
    fields = check.editable_fields(frame)
    await desk.service.customers.update(desk.identity, customer, version, fields, ref=ref)


async def on_customer_classify(desk: Desk, frame: Frame, ref: Any) -> None:
    customer = check.need(frame, "customer")
    group = check.choice(frame, "group", GROUPS)
    assert group is not None
    await desk.service.customers.classify(desk.identity, customer, group, ref=ref)


Handler = Callable[[Desk, Frame, Any], Awaitable[None]]
# Client frame type → handler; anything else is answered with `error` {code: invalid}.
HANDLERS: Final[Mapping[str, Handler]] = {
    "ping": on_ping,
    "presence.set": on_presence_set,
    "offer.accept": on_offer_accept,
    "offer.reject": on_offer_reject,
    "message.send": on_message_send,
    "conversation.complete": on_conversation_complete,
    "wrapup.done": on_wrapup_done,
    "conversation.transfer": on_conversation_transfer,
    "customer.get": on_customer_get,
    "customer.update": on_customer_update,
    "customer.classify": on_customer_classify,
    "suggestion.outcome": on_suggestion_outcome,
}
