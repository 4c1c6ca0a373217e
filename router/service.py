"""The server's core: events in, routing decisions, frames out. No sockets here.

`Service` joins the routing engine (`queues`), the store (`store`) and the outbound
channel ports (`channels.base`). The HTTP and WebSocket modules (`ingest.py`, `agent_ws.py` and
`agent_session.py`, `ops.py`) decode what arrives and call it; it answers by pushing frames to
agents' outboxes, from where every node's sessions deliver them. See `docs/server.md`.

This module wires the node's parts and holds what they all use — effects → frames → one push
— and the agent's work on offers and conversations (accept, reject, complete, transfer,
presence). The rest is a part of its own that the Service hands on to: the node's loops
(`router.node_loops`), the desktops connected here and their timers (`router.attendance`),
log entries → routing (`router.inbound`, call steps `router.voice_tasks`), customers
(`router.customers`), replies (`router.replies`), the lease (`router.liveness`). No aiohttp.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from channels.base import ChannelPorts, OutboundPort
from queues.base import RoutingEngine
from queues.effects import Assigned, Effect, PresenceChanged, TaskEnded
from queues.errors import RoutingError
from queues.views import TaskView
from router.admission import Admission
from router.attendance import Attendance
from router.campaigns import Campaigns
from router.customers import Customers
from router.errors import ServiceError
from router.frames import Frame, View, conversation_of, needed, shape
from router.guidance import Guidance, GuidanceRule
from router.identity import AgentIdentity
from router.inbound import Inbound
from router.liveness import Liveness
from router.node_loops import NodeLoops
from router.replies import Replies
from router.settings import CampaignSettings
from router.voice_tasks import VoiceTasks
from store.base import Store
from store.campaigns import CampaignStore
from store.model import InboundEvent, Ingested, LogEntry

log = structlog.get_logger("omniroute.service")

# refusals of a conversation's own task that leave room for an outbound one the agent holds
OTHERS_TASK = ("not_found", "forbidden")

HELD = ("assigned", "wrapup")  # the engine's states of work an agent holds (welcome.held)


class Service:
    """See the module docstring; every public coroutine is one request or one event."""

    def __init__(
        self,
        engine: RoutingEngine,
        store: Store,
        *,
        outbound: OutboundPort | None = None,
        node: str = "node-1",
        offline_grace_s: float = 10.0,
        release_after_s: float = 120.0,
        history_limit: int = 50,
        max_backlog_s: float = 0.0,
        lease_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        guidance: Sequence[GuidanceRule] = (),
        campaigns: CampaignStore | None = None,
        campaign_settings: CampaignSettings | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.outbound = outbound if isinstance(outbound, ChannelPorts) else ChannelPorts(outbound)
        self.hooks: list[Callable[[Effect], Awaitable[None]]] = []  # adapters: e.g. voice connect
        self.node = node
        self.history_limit = history_limit
        self.max_backlog_s = max_backlog_s  # 0: no bound
        self.admission = Admission(max_backlog_s)
        self.clock = clock
        self.metrics: Any = None  # router.metrics.Metrics when served; counts offers
        self.loops = NodeLoops(self)
        self.attendance = Attendance(self, self.loops.stopping, offline_grace_s, release_after_s)
        self.identities = self.attendance.identities  # agents connected to this node
        self.inbound = Inbound(self)
        self.voice_tasks = VoiceTasks(self)
        self.liveness = Liveness(self, lease_s)
        self.replies = Replies(self)
        self.customers = Customers(self)
        self.guidance = Guidance(guidance)
        self.campaigns = Campaigns(self, campaigns, campaign_settings)  # router.campaigns

    def guide(self, conversation: Frame) -> list[Frame]:
        """The alerts and suggestions for the agent of `conversation` (router.guidance)."""
        frames = self.guidance.frames(conversation)
        if frames and self.metrics is not None:
            for frame in frames:
                self.metrics.guided(frame["type"], frame["rule"])
        return frames

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the engine and the store. A store that cannot be reached yet (Redis down at
        boot) is retried by the consumer loop; `/readyz` says 503 meanwhile."""
        await self.engine.start()
        try:
            await self.store.start()
            await self.campaigns.store.start()
            await self.liveness.beat()  # leased before the consumer reads anything
        except Exception as exc:
            log.warning("store.unavailable", node=self.node, error=type(exc).__name__)

    def run(self) -> None:
        """Start the loops of a node (router.node_loops)."""
        self.loops.run()

    async def close(self, drain_s: float = 5.0) -> None:
        """Stop the loops after the batch in hand (bounded), stop timers, close engine+store."""
        await self.loops.stop(drain_s)
        await self.attendance.stop()
        await self.store.close()
        await self.campaigns.store.close()
        await self.engine.close()

    def now_ms(self) -> int:
        return round(self.clock() * 1000)

    # -- inbound ---------------------------------------------------------------------------------

    async def ingest(self, events: list[InboundEvent]) -> list[Ingested]:
        """Accept adapter events into the durable log (dedupe, identity, conversation).

        Raises `Overloaded`, storing nothing, while an event accepted now would wait in the
        log past `max_backlog_s` (`router.admission`): an adapter told to retry is better
        served than one told 202 for a conversation routed minutes later."""
        self.admit()
        self.admission.admitted(len(events))
        return await self.store.ingest(events, self.now_ms())

    def admit(self) -> None:
        """Raise `Overloaded` while the backlog is at its bound: no I/O, so the edges ask it
        before they read a body (a refusal must cost far less than routing, or refusing
        starves the consumer that would end the overload)."""
        self.admission.admit()

    async def process_batch(self, entries: Sequence[LogEntry]) -> None:
        """Route a batch of log entries in order and acknowledge them (router.inbound)."""
        await self.inbound.process_batch(entries)

    async def process(self, entry: LogEntry) -> None:
        """Route one log entry (router.inbound); the caller acknowledges it."""
        await self.inbound.process(entry)

    async def call_id_of(self, task_id: str) -> str | None:
        """The PBX call id of a voice task (router.voice_tasks)."""
        return await self.voice_tasks.call_id_of(task_id)

    # -- effects → frames ------------------------------------------------------------------------

    async def apply_effects(
        self,
        effects: Sequence[Effect],
        answer: tuple[str, Any, str | None] | None = None,
        views: dict[str, View] | None = None,
        states: Sequence[tuple[str, str, str | None]] = (),
    ) -> None:
        """Turn engine effects into frames and conversation states; push them in one batch.

        `answer` = (agent, ref, frame type): the first frame of that type to that agent carries
        the ref; when there is none, an `ack` {ref} is added — every ref gets an answer.
        `states` are changes the caller adds (applied before those of the effects).
        """
        frames, shaped = await self.shape_effects(effects, answer, views)
        states = [*states, *shaped]
        await self.run_hooks(effects)  # before the agent is told: e.g. the PBX connect's job
        if frames or states:
            await self.store.push(frames, states)  # one round trip: frames and their states

    async def run_hooks(self, effects: Sequence[Effect]) -> None:
        """Show each effect to the adapters' hooks (the voice connector); a hook's failure is
        logged, never raised: the routing is decided already."""
        for effect in effects:
            for hook in self.hooks:
                try:
                    await hook(effect)
                except Exception as exc:  # an adapter's failure must not undo the routing
                    log.error("hook.failed", hook=getattr(hook, "__qualname__", "?"),
                              error=type(exc).__name__)  # fmt: skip

    async def shape_effects(
        self,
        effects: Sequence[Effect],
        answer: tuple[str, Any, str | None] | None = None,
        views: dict[str, View] | None = None,
    ) -> tuple[list[tuple[str, Frame]], list[tuple[str, str, str | None]]]:
        """The frames and conversation states of `effects` (router.frames), reading the views
        they need and are not in `views`; counts offers and watches agents gone offline."""
        views = dict(views or {})
        for conv_id in needed(effects):
            if conv_id not in views:
                views[conv_id] = await self.store.view(conv_id, self.history_limit)
        extras = await self.campaigns.fields(effects)  # a campaign contact's offer fields
        shaped = shape(effects, views, answer, self.guide, extras)
        if shaped.offers and self.metrics is not None:
            self.metrics.offered(shaped.offers)
        for agent in shaped.offline:
            self.attendance.watch_offline(agent)
        return shaped.frames, shaped.states

    # -- desktops on this node (router.attendance) -----------------------------------------------

    @property
    def desktops(self) -> dict[str, int]:
        """Agent → desktops connected to this node."""
        return self.attendance.desktops

    async def connect(self, identity: AgentIdentity) -> None:
        """A desktop connected: log the agent in (away) and cancel a pending disconnect."""
        await self.attendance.connect(identity)

    async def disconnect(self, identity: AgentIdentity) -> None:
        """A desktop went away. With none left: offline after the grace, release later."""
        await self.attendance.disconnect(identity)

    async def heartbeat_many(self, identities: Sequence[AgentIdentity]) -> None:
        """Keep every given agent's presence alive in one engine call (router.attendance)."""
        await self.attendance.heartbeat_many(identities)

    # -- agent requests: offers and conversations ------------------------------------------------

    async def engine_call(self, call: Any, *args: Any, **kwargs: Any) -> list[Effect]:
        """`call(*args, **kwargs)` on the engine; a refusal becomes a `ServiceError`."""
        try:
            effects: list[Effect] = await call(*args, **kwargs)
        except RoutingError as exc:
            raise ServiceError(exc.code, exc.message) from exc
        return effects

    async def presence(self, identity: AgentIdentity, state: str, ref: Any = None) -> None:
        """`presence.set`: answered by a `presence` frame, also when nothing changed."""
        effects = await self.engine_call(self.engine.set_presence, identity.id, state)
        if not any(isinstance(e, PresenceChanged) and e.agent == identity.id for e in effects):
            view = await self.engine.agent_view(identity.id)
            shown = view["state"] if view else state
            effects = [PresenceChanged(identity.id, shown), *effects]
        await self.apply_effects(effects, (identity.id, ref, "presence"))

    async def accept(
        self,
        identity: AgentIdentity,
        reservation: str,
        ref: Any = None,
        conversation: str | None = None,
    ) -> None:
        """`offer.accept`. With `conversation` (the offer said which), the view the `assigned`
        frame carries is read while the engine decides, not after it."""
        answer = (identity.id, ref, "assigned")
        if conversation is None:
            effects = await self.engine_call(self.engine.accept, reservation, identity.id)
            await self.apply_effects(effects, answer)
            return
        deciding = self.engine_call(self.engine.accept, reservation, identity.id)
        reading = self.store.view(conversation, self.history_limit)
        decided, view = await asyncio.gather(deciding, reading, return_exceptions=True)
        views = {} if isinstance(view, BaseException) else {conversation: view}
        if isinstance(decided, ServiceError):
            held = await self._held_by(identity, conversation)
            if held is not None:
                # accepted before: a retry whose first answer was lost (the node died between
                # the engine's decision and the push) — answer it again
                log.info("offer.accept_repeated", agent=identity.id, conversation=conversation)
                decided = [Assigned(conversation, identity.id, held["channel"])]
        if isinstance(decided, BaseException):
            raise decided
        await self.apply_effects(decided, answer, views=views)

    async def _held_by(
        self, identity: AgentIdentity, task_id: str, state: str = "assigned"
    ) -> TaskView | None:
        """The task's view when the agent holds it in `state`, else None."""
        task = await self.engine.task_view(task_id)
        held = task is not None and task["agent"] == identity.id and task["state"] == state
        return task if held else None

    async def held(self, identity: AgentIdentity) -> list[dict[str, str]]:
        """The work the engine has this agent hold — `welcome.held`, so a desktop that missed
        an answer (its node died after the decision) still learns what is its."""
        view = await self.engine.agent_view(identity.id)
        out: list[dict[str, str]] = []
        for task_id in view["tasks"] if view else ():
            task = await self.engine.task_view(task_id)
            if task is not None and task["agent"] == identity.id and task["state"] in HELD:
                out.append({"conversation": conversation_of(task_id), "state": task["state"]})
        return out

    async def reject(
        self, identity: AgentIdentity, reservation: str, reason: str | None = None, ref: Any = None
    ) -> None:
        effects = await self.engine_call(self.engine.reject, reservation, identity.id)
        await self.apply_effects(effects, (identity.id, ref, None))
        log.info("offer.rejected", agent=identity.id, reservation=reservation)

    async def complete(
        self,
        identity: AgentIdentity,
        conversation: str,
        disposition: str | None = None,
        ref: Any = None,
    ) -> None:
        try:
            effects = await self.engine_call(self.engine.complete, conversation, identity.id)
        except ServiceError as exc:
            # the conversation's own task is none of this agent's (there is none, or another
            # agent holds it): the agent's campaign contact of that conversation, if any
            if exc.code in OTHERS_TASK and await self.campaigns.complete(
                identity, conversation, disposition, ref
            ):
                return
            if (
                exc.code != "conflict"
                or await self._held_by(identity, conversation, "wrapup") is None
            ):
                raise
            # completed before: a retry whose answer was lost — say it again, state and all
            log.info("conversation.complete_repeated", agent=identity.id, conversation=conversation)
            effects = []
        await self.completed(identity, conversation, effects, ref)

    async def completed(
        self, identity: AgentIdentity, conversation: str, effects: list[Effect], ref: Any
    ) -> None:
        """Tell the agent its `complete` went through: the effects, and the conversation in
        wrap-up unless the task ended at once (no wrap-up time)."""
        wrapup = [] if any(isinstance(e, TaskEnded) for e in effects) else [
            (conversation, "wrapup", identity.id)
        ]  # fmt: skip
        await self.apply_effects(effects, (identity.id, ref, None), states=wrapup)

    async def wrapup_done(
        self, identity: AgentIdentity, conversation: str, ref: Any = None
    ) -> None:
        try:
            effects = await self.engine_call(self.engine.wrapup_done, conversation, identity.id)
        except ServiceError as exc:  # not this agent's own task: a campaign contact's?
            if exc.code in OTHERS_TASK and await self.campaigns.wrapup_done(
                identity, conversation, ref
            ):
                return
            raise
        await self.apply_effects(effects, (identity.id, ref, None))

    async def suggestion_outcome(
        self, identity: AgentIdentity, conversation: str, offer: str, outcome: str, ref: Any = None
    ) -> None:
        """The agent says what became of a suggested offer: counted per rule and offer, and
        kept on the conversation (meta `offer:<id>` of its latest interaction)."""
        rule = self.guidance.by_offer.get(offer)
        if rule is None:
            raise ServiceError("not_found", f"offer {offer} is not one of the suggestions")
        task = await self.engine.task_view(conversation)
        if task is None or task["agent"] != identity.id:
            raise ServiceError("forbidden", f"conversation {conversation} is not yours")
        conv = await self.store.conversation(conversation)
        if conv is not None:
            history = await self.store.history(conv.customer, self.history_limit)
            latest = next((i for i in reversed(history) if i.conversation == conversation), None)
            if latest is not None:
                await self.store.annotate(conv.customer, latest.id, {f"offer:{offer}": outcome})
        if self.metrics is not None:
            self.metrics.outcome(rule.id, offer, outcome)
        log.info("suggestion.outcome", agent=identity.id, conversation=conversation,
                 rule=rule.id, offer=offer, outcome=outcome)  # fmt: skip
        await self.apply_effects([], (identity.id, ref, None))

    async def transfer(
        self,
        identity: AgentIdentity,
        conversation: str,
        to_agent: str | None = None,
        to_tier: str | None = None,
        ref: Any = None,
    ) -> None:
        effects = await self.engine_call(
            self.engine.transfer, conversation, identity.id, to_agent=to_agent, to_tier=to_tier
        )
        await self.apply_effects(effects, (identity.id, ref, None))

    # -- customers (router.customers; replies and edits are called on `replies`, `customers`) --

    async def visible(self, identity: AgentIdentity, customer_id: str) -> bool:
        """The hard filter, now: may this agent see anything of this customer?"""
        return await self.customers.visible(identity, customer_id)
