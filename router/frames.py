"""Frames shaped in one place: engine effects and store records → what desktops receive.

Pure functions, no I/O: `Service` reads the views a shape needs (`needed`) and calls `shape`;
the protocol's objects (`customer_view`, `conversation_view`, `message_frame`) are built here
and nowhere else. `docs/protocol.md` lists every frame; `docs/server.md` the effect → frame
table this module implements.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from queues import effects as fx
from router.clock import rfc3339
from store.model import EDITABLE_FIELDS, Conversation, Customer, Interaction

Frame = dict[str, Any]
View = tuple[Conversation | None, Customer | None, list[Interaction]]
State = tuple[str, str, str | None]  # (conversation, state, agent)


def age_of(birthday: Any, today: date) -> int | None:
    """Whole years since a YYYY-MM-DD birthday, or None when there is none."""
    if not isinstance(birthday, str):
        return None
    try:
        born = date.fromisoformat(birthday)
    except ValueError:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def conversation_of(task_id: str) -> str:
    """The conversation a task belongs to (a second call's task is `<conv>~<call_id>`)."""
    return task_id.split("~", 1)[0]


def customer_view(customer: Customer) -> Frame:
    """The `customer` object of the protocol (profile, editable fields, counters, age)."""
    view: Frame = {
        "id": customer.id,
        "version": customer.version,
        "client_group": customer.client_group,
        "site": customer.site,
        "messages_in": customer.messages_in,
        "messages_out": customer.messages_out,
    }
    view.update({k: v for k, v in customer.profile.items() if k != "client_group"})
    view["age"] = age_of(customer.profile.get("birthday"), datetime.now(UTC).date())
    for name in EDITABLE_FIELDS:
        view[name] = customer.editable.get(name, "")
    return view


def conversation_view(conversation_id: str, view: View, state: str | None = None) -> Frame:
    """The `conversation` object of offers and assignments: customer, channels, history;
    `state` is the state the frame announces (its change is pushed with the frame)."""
    conv, customer, history = view
    if conv is None:
        return {"id": conversation_id}
    return {
        "id": conv.id,
        "state": state or conv.state,
        "customer": customer_view(customer) if customer else {"id": conv.customer},
        "channels": list(conv.channels),
        "last_channel": conv.last_channel,
        "created_at": conv.created_at,
        "history": [i.wire() for i in history],
    }


def customer_frame(customer: Customer, ref: Any) -> Frame:
    """The answer to `customer.get` and `customer.update`: the customer as it is now."""
    return {"type": "customer", "customer": customer_view(customer), "ref": ref}


def classified_frame(customer: str, group: str, ref: Any) -> Frame:
    """The answer to `customer.classify`: an `ack` naming the customer's new group."""
    return {"type": "ack", "ref": ref, "customer": customer, "client_group": group}


def reply_taken_frame(
    conversation: str, customer: str, interaction: Interaction, ref: Any
) -> Frame:
    """The answer to `message.send`: an `ack` with the stored reply. `customer` lets the
    send-time tier filter judge the body inside."""
    return {
        "type": "ack",
        "ref": ref,
        "conversation": conversation,
        "customer": customer,
        "interaction": interaction.wire(),
    }


def status_frame(
    conversation: str, customer: str, interaction: str, status: str, error: str | None
) -> Frame:
    """`message.status`: what became of a reply (`customer`: the send-time tier filter
    judges by it)."""
    frame: Frame = {
        "type": "message.status",
        "conversation": conversation,
        "customer": customer,
        "interaction": interaction,
        "status": status,
    }
    if error:
        frame["error"] = error
    return frame


def message_frame(conv: Conversation, customer: Customer, interaction: Interaction) -> Frame:
    """A customer's message to the conversation's holder."""
    return {
        "type": "message",
        "conversation": conv.id,
        "customer": customer.id,
        "interaction": interaction.wire(),
    }


def needed(effects: Sequence[fx.Effect]) -> list[str]:
    """The conversations whose view `shape` needs (offers and assignments carry them)."""
    out: list[str] = []
    for effect in effects:
        if isinstance(effect, fx.Offer | fx.Assigned):
            conv_id = conversation_of(effect.task)
            if conv_id not in out:
                out.append(conv_id)
    return out


@dataclass
class Shaped:
    """What `shape` made of some effects: frames per agent, conversation states, and what the
    caller acts on (offers to count, agents that went offline)."""

    frames: list[tuple[str, Frame]] = field(default_factory=list)
    states: list[State] = field(default_factory=list)
    offers: int = 0
    offline: list[str] = field(default_factory=list)


def shape(
    effects: Sequence[fx.Effect],
    views: Mapping[str, View],
    answer: tuple[str, Any, str | None] | None = None,
    guide: Callable[[Frame], list[Frame]] | None = None,
    extras: Mapping[str, Frame] | None = None,
) -> Shaped:
    """Frames and conversation states of `effects`, in order (the table in docs/server.md).

    `views` must hold every conversation of `needed(effects)`. `answer` = (agent, ref, frame
    type): the first frame of that type to that agent carries the ref; when there is none, an
    `ack` {ref} is added — every ref gets an answer. `guide` (router.guidance) gives the
    `alert` and `suggestion` frames that follow an offer's or an assignment's frame. `extras`
    (task → fields) are added to the offer and `assigned` frames of those tasks: a campaign
    contact's `direction`, `campaign` and `contact` (router.campaigns).
    """
    extras = extras or {}
    out = Shaped()
    for effect in effects:
        if isinstance(effect, fx.PresenceChanged):
            out.frames.append((effect.agent, {"type": "presence", "state": effect.state}))
            if effect.state == "offline":
                out.offline.append(effect.agent)
            continue
        conv_id = conversation_of(effect.task)
        # a second call's task leaves the state alone; a campaign contact's is the conversation's
        main = conv_id == effect.task or "~cp:" in effect.task
        if isinstance(effect, fx.Offer):
            out.offers += 1
            if main:
                out.states.append((conv_id, "offered", effect.agent))
            frame: Frame = {
                "type": "offer",
                "reservation": effect.reservation,
                "conversation": conversation_view(conv_id, views[conv_id], "offered"),
                "channel": effect.channel,
                "expires_at": rfc3339(effect.expires_at),
                **extras.get(effect.task, {}),
            }
            out.frames.append((effect.agent, frame))
            if guide is not None:
                # a campaign contact's attributes are fields the rules test (router.guidance)
                seen = {**frame["conversation"], **extras.get(effect.task, {})}
                out.frames.extend((effect.agent, f) for f in guide(seen))
        elif isinstance(effect, fx.OfferRevoked):
            frame = {
                "type": "offer.revoked",
                "reservation": effect.reservation,
                "reason": effect.reason,
                "conversation": conv_id,
            }
            out.frames.append((effect.agent, frame))
            if main:
                out.states.append((conv_id, "queued", None))
        elif isinstance(effect, fx.Assigned):
            if main:
                out.states.append((conv_id, "assigned", effect.agent))
            conv = conversation_view(conv_id, views[conv_id], "assigned")
            assigned = {"type": "assigned", "conversation": conv, **extras.get(effect.task, {})}
            out.frames.append((effect.agent, assigned))
            if guide is not None:
                out.frames.extend(
                    (effect.agent, f) for f in guide({**conv, **extras.get(effect.task, {})})
                )
        elif isinstance(effect, fx.AssignmentRevoked):
            frame = {"type": "conversation.revoked", "conversation": conv_id}
            frame["reason"] = effect.reason
            out.frames.append((effect.agent, frame))
            if main:
                out.states.append((conv_id, "queued", None))
        elif isinstance(effect, fx.TaskEnded) and main:
            out.states.append((conv_id, "closed", effect.agent))
    if answer is not None:
        agent, ref, kind = answer
        for target, frame in out.frames:
            if target == agent and frame["type"] == kind:
                if ref is not None:
                    frame["ref"] = ref
                break
        else:
            out.frames.append((agent, {"type": "ack", "ref": ref}))
    return out
