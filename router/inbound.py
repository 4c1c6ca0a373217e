"""Inbound: log entries → conversations, queues and frames (the consumer's work).

`Inbound` routes what the event log hands a node: a batch at a time on the common path (one
`apply_many`, one `enqueue_many`, one push that acknowledges the batch), one entry at a time
for call steps, which need the engine's view of the task first (`router.voice_tasks` routes
those). It works through its `Service` (store, engine, effects → frames); `docs/server.md`
draws the path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from queues.args import Enqueue
from queues.effects import Effect, Offer
from queues.errors import RoutingError
from router.campaigns import EVENT_TYPE as CONTACT_EVENT
from router.frames import Frame, View, message_frame
from store.errors import StoreError
from store.model import (
    HELD_STATES,
    Applied,
    Customer,
    InboundEvent,
    LogEntry,
)

if TYPE_CHECKING:
    from router.service import Service

log = structlog.get_logger("omniroute.inbound")


def _item(
    task_id: str,
    customer: Customer,
    channel: str,
    last_agent: str | None,
    skills: Mapping[str, int] | None = None,
) -> Enqueue:
    """A task to put in line; its priority (and skill-rule) attributes are the profile and the
    channel, its own skills those of the event that opened it."""
    attrs: dict[str, Any] = {**customer.profile, "channel": channel}
    return Enqueue(task_id, customer.id, channel, customer.client_group, attrs, last_agent, skills)


class Inbound:
    """See the module docstring; one per `Service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def process_batch(self, entries: Sequence[LogEntry]) -> None:
        """Route a batch of log entries in order and acknowledge them.

        Messages and new work go together: one `apply_many`, one `enqueue_many`, and one push
        of every frame and conversation state that also acknowledges those entries — three
        round trips on Redis for the whole run, however long. Voice call steps and
        `call.ended` need the engine's view of the task first; they go one by one, at their
        place in the batch, so a conversation's events keep their order.
        """
        run: list[LogEntry] = []
        single: list[str] = []
        for entry in entries:
            if self._plain(entry.event):
                run.append(entry)
                continue
            if run:
                await self._route_run(run)
                run = []
            await self.process(entry)
            single.append(entry.entry_id)
        if run:
            await self._route_run(run)
        if single:
            await self.service.store.ack_log(single)

    @staticmethod
    def _plain(event: InboundEvent) -> bool:
        """An event the batched path routes: anything but call steps with a call id and
        `call.ended` (see `router.voice_tasks`)."""
        if event.type in ("call.ended", CONTACT_EVENT):
            return False
        return not (event.channel == "voice" and event.meta.get("call_id"))

    async def _route_run(self, run: Sequence[LogEntry]) -> None:
        svc = self.service
        applied = await svc.store.apply_many(run, svc.now_ms(), svc.history_limit)
        await self._route_applied(run, applied, ack=[entry.entry_id for entry in run])

    async def _route_applied(
        self, run: Sequence[LogEntry], applied: Sequence[Applied | StoreError], ack: list[str]
    ) -> None:
        """Route entries the store has applied: a message to a held conversation goes to its
        holder; anything else for an open conversation joins one `enqueue_many`; one push
        carries every frame and state and acknowledges `ack`."""
        frames: list[tuple[str, Frame]] = []
        views: dict[str, View] = {}
        waiting: dict[str, Enqueue] = {}
        racing: dict[str, list[Frame]] = {}
        again: set[str] = set()  # conversations of entries read before (a dead node's)
        for entry, result in zip(run, applied, strict=True):
            event = entry.event
            if isinstance(result, StoreError):  # refused for good: retrying cannot help
                log.error("event.refused", event_id=event.id, error=type(result).__name__)
                continue
            conv, customer, interaction, history = result
            views[conv.id] = (conv, customer, history)  # the last one has the whole batch
            if entry.reclaimed:
                again.add(conv.id)
            held = conv.agent if conv.state in HELD_STATES else None
            if event.type == "message" and held:
                if interaction is not None:
                    frames.append((held, message_frame(conv, customer, interaction)))
                continue
            if event.type == "message" and interaction is not None:
                # Should its task be in line or held already (another node is offering it
                # right now, its push not yet made), the message goes to that holder.
                racing.setdefault(conv.id, []).append(message_frame(conv, customer, interaction))
            if conv.state != "closed" and conv.id not in waiting:
                waiting[conv.id] = _item(
                    conv.id, customer, event.channel, conv.last_agent, event.skills
                )
        states: list[tuple[str, str, str | None]] = []
        effects: list[Effect] = []
        to_holder: list[tuple[str, Frame]] = []
        if waiting:
            items = list(waiting.values())
            decisions = await self.service.engine.enqueue_many(items)
            unsent: list[str] = []
            for item, decided in zip(items, decisions, strict=True):
                if isinstance(decided, RoutingError):  # Conflict: in line or held already
                    to_holder.extend((item.task, f) for f in racing.get(item.task, []))
                    if item.task in again:
                        unsent.append(item.task)
                    continue
                effects.extend(decided)
            effects.extend(await self._offers_never_sent(unsent, views))
            more_frames, states = await self.service.shape_effects(effects, views=views)
            frames.extend(more_frames)
        await self.service.run_hooks(effects)  # before the agents are told
        consumer = self.service.node if ack else None  # fenced: see router.liveness
        await self.service.store.push(
            frames, states, ack=ack, to_holder=to_holder, consumer=consumer
        )
        # one line per batch, not per event: at a thousand events a second that is most of
        # the logging cost; the ids are all there for a grep
        offers = sum(isinstance(e, Offer) for e in effects)
        log.info("events.routed", events=[e.event.id for e in run], offers=offers)

    async def _offers_never_sent(self, tasks: Sequence[str], views: dict[str, View]) -> list[Offer]:
        """Offers a dead node made and never pushed, for conversations of entries taken over
        from it: the engine holds the reservation, the store never recorded the offer (the
        conversation is still `queued`). Offered now, under the same reservation, they reach
        the agent at once instead of after the reservation times out."""
        out: list[Offer] = []
        engine, liveness = self.service.engine, self.service.liveness
        # A live node pushes its offer milliseconds after it reserved; the dead node was
        # silent for a whole lease before it was taken over. So only a reservation made half
        # a lease before the takeover can be the dead node's own.
        before_ms = liveness.took_over_ms - liveness.lease_ms // 2
        timeout_ms = round(engine.policy.reservation_timeout_s * 1000)
        for task_id in tasks:
            conv = views[task_id][0] if task_id in views else None
            if conv is None or conv.state != "queued":
                continue  # the offer was recorded: it was pushed
            task = await engine.task_view(task_id)
            if task is None or task["state"] != "reserved" or not task.get("res_until"):
                continue
            if int(task["res_until"]) - timeout_ms > before_ms:
                continue  # reserved since the takeover: a live node's offer, on its way
            until_s = float(task["res_until"]) / 1000
            out.append(Offer(task["res"], task_id, task["agent"], task["channel"], until_s))
            log.info("offer.resent", task=task_id, reservation=task["res"], agent=task["agent"])
        return out

    async def process(self, entry: LogEntry) -> None:
        """Route one inbound event (a call step, or an entry on its own); the caller
        acknowledges it. Call steps first ask the engine about the call's task; the rest goes
        the batched path's way, as a batch of one."""
        svc = self.service
        result = await svc.store.apply_inbound_view(entry, svc.now_ms(), svc.history_limit)
        conv, customer, interaction, _history = result
        event = entry.event
        if event.type == CONTACT_EVENT:  # a campaign's claimed contact (router.campaigns)
            await svc.campaigns.route(entry, conv, customer)
            return
        call_id = event.meta.get("call_id") if event.channel == "voice" else None
        if (
            isinstance(call_id, str)
            and call_id
            and await svc.voice_tasks.route(conv, customer, event, call_id, interaction)
        ):
            return
        if event.type == "call.ended":
            task = await svc.engine.task_view(conv.id)
            if task is not None and task["state"] in ("queued", "reserved"):
                await svc.apply_effects(await svc.engine.withdraw(conv.id))
            return
        await self._route_applied([entry], [result], ack=[])

    async def enqueue(
        self,
        task_id: str,
        customer: Customer,
        channel: str,
        last_agent: str | None,
        skills: Mapping[str, int] | None = None,
    ) -> None:
        """Put one task in line and deliver what the engine decided; raises the engine's
        Conflict when the task is in line already."""
        [decided] = await self.service.engine.enqueue_many(
            [_item(task_id, customer, channel, last_agent, skills)]
        )
        if isinstance(decided, RoutingError):
            raise decided
        await self.service.apply_effects(decided)
