"""The server's core: events in, routing decisions, frames out. No sockets here.

`Service` joins the routing engine (`queues`), the store (`store`) and the outbound
channel ports (`channels.base`). The HTTP and WebSocket modules (`ingest.py`, `agent_ws.py` and
`agent_session.py`, `ops.py`) decode what arrives and call it; it answers by pushing frames to
agents' outboxes, from where every node's sessions deliver them. See `docs/server.md`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog

from channels.base import ChannelPorts, ChannelRefused, OutboundMessage, OutboundPort
from queues.base import (
    Assigned,
    Effect,
    PresenceChanged,
    RoutingEngine,
    TaskEnded,
)
from queues.errors import RoutingError
from queues.policy import CHANNELS, GROUPS
from router.admission import Admission
from router.frames import (
    Frame,
    View,
    customer_view,
    needed,
    shape,
)
from router.identity import AgentIdentity as AgentIdentity  # re-exported: the socket modules
from router.inbound import Inbound
from router.liveness import Liveness
from router.replies import Replies
from store.base import Store
from store.errors import Fenced, StaleVersion
from store.model import (
    EDITABLE_FIELDS,
    Conversation,
    Customer,
    InboundEvent,
    Ingested,
    Interaction,
    LogEntry,
)

log = structlog.get_logger("omniroute.service")

MAX_FIELD = {"first_name": 200, "residence_city": 200, "job": 200, "vcard": 20_000}
MAX_BODY = 64 * 1024


class ServiceError(Exception):
    """Raised when an agent's request is refused; `code` is a wire error code."""

    def __init__(self, code: str, message: str, details: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = dict(details or {})


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
    ) -> None:
        self.engine = engine
        self.store = store
        self.outbound = outbound if isinstance(outbound, ChannelPorts) else ChannelPorts(outbound)
        self.hooks: list[Callable[[Effect], Awaitable[None]]] = []  # adapters: e.g. voice connect
        self.identities: dict[str, AgentIdentity] = {}  # agents connected to this node
        self.node = node
        self.offline_grace_s = offline_grace_s
        self.release_after_s = release_after_s
        self.history_limit = history_limit
        self.max_backlog_s = max_backlog_s  # 0: no bound
        self.admission = Admission(max_backlog_s)
        self.clock = clock
        self._sessions: dict[str, int] = {}
        self._away: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._consuming = False
        self._consumer: asyncio.Task[None] | None = None
        self.metrics: Any = None  # router.metrics.Metrics when served; counts offers
        self.inbound = Inbound(self)
        self.liveness = Liveness(self, lease_s)
        self.replies = Replies(self)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the engine and the store. A store that cannot be reached yet (Redis down at
        boot) is retried by the consumer loop; `/readyz` says 503 meanwhile."""
        await self.engine.start()
        try:
            await self.store.start()
            await self.liveness.beat()  # leased before the consumer reads anything
        except Exception as exc:
            log.warning("store.unavailable", node=self.node, error=type(exc).__name__)

    def run(self) -> None:
        """Start the loops of a node: the log consumer, the engine ticker and (with a bound on
        the backlog) the backlog sampler."""
        self._consumer = asyncio.create_task(self.run_consumer())
        loops = [
            self._consumer,
            asyncio.create_task(self.run_ticker()),
            asyncio.create_task(self.liveness.run(self._stopping)),
            asyncio.create_task(self.replies.run(self._stopping)),
        ]
        if self.max_backlog_s:
            loops.append(asyncio.create_task(self.run_backlog()))
        for task in loops:
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def close(self, drain_s: float = 5.0) -> None:
        """Stop the loops after the batch in hand (bounded), stop timers, close engine+store."""
        self._stopping.set()
        if self._consumer is not None and not self._consuming:
            self._consumer.cancel()  # idle in a blocking read: nothing in hand to finish
        loops = list(self._background)
        if loops:
            _done, pending = await asyncio.wait(loops, timeout=drain_s)
            for task in pending:
                task.cancel()
        for task in [*self._away.values(), *loops]:
            task.cancel()
        for task in [*self._away.values(), *loops]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._away.clear()
        await self.store.close()
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

    async def run_backlog(self, interval_s: float = 0.2) -> None:
        """Sample the log's backlog (one pipeline on Redis) until stopped; ingest reads it."""
        while not self._stopping.is_set():
            try:
                backlog = await self.store.backlog()
                self.admission.sample(backlog)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is down: ingest will say so by itself
                log.debug("backlog.unknown", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval_s)

    async def run_consumer(self, batch: int = 100, block_ms: int = 500) -> None:
        """Consume the log until stopped: process each entry, acknowledge it after. A blocking
        read waits at most `block_ms`, so entries taken over from a dead node (read first) wait
        no longer than that."""
        while not self._stopping.is_set():
            try:
                entries = await self.store.read_log(self.node, batch, block_ms)
                self._consuming = True  # close() lets a batch in hand finish
                if entries:
                    await self.process_batch(entries)
            except asyncio.CancelledError:
                raise
            except Fenced as exc:  # presumed dead meanwhile: what is still ours comes again
                log.warning("consumer.fenced", node=self.node, reason=str(exc))
                self.store.reread(self.node)
            except Exception as exc:  # keep consuming; what it still holds is retried
                log.error("consumer.failed", node=self.node, error=type(exc).__name__)
                self.store.reread(self.node)
                await asyncio.sleep(0.5)
                with contextlib.suppress(Exception):
                    await self.store.start()  # idempotent; re-creates a lost consumer group
            finally:
                self._consuming = False

    async def run_ticker(self, interval_s: float = 0.25) -> None:
        """Fire the engine's timers until stopped (offer time-outs, wrap-up ends, levels)."""
        while not self._stopping.is_set():
            try:
                effects = await self.engine.tick()
                await self.apply_effects(effects)
                if effects:
                    continue  # more may be due: tick again at once
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("ticker.failed", node=self.node, error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval_s)

    async def process_batch(self, entries: Sequence[LogEntry]) -> None:
        """Route a batch of log entries in order and acknowledge them (router.inbound)."""
        await self.inbound.process_batch(entries)

    async def process(self, entry: LogEntry) -> None:
        """Route one log entry (router.inbound); the caller acknowledges it."""
        await self.inbound.process(entry)

    async def call_id_of(self, task_id: str) -> str | None:
        """The PBX call id of a voice task (router.inbound)."""
        return await self.inbound.call_id_of(task_id)

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
        frames, shaped = await self._shape(effects, answer, views)
        states = [*states, *shaped]
        await self._run_hooks(effects)  # before the agent is told: e.g. the PBX connect's job
        if frames or states:
            await self.store.push(frames, states)  # one round trip: frames and their states

    async def _run_hooks(self, effects: Sequence[Effect]) -> None:
        for effect in effects:
            for hook in self.hooks:
                try:
                    await hook(effect)
                except Exception as exc:  # an adapter's failure must not undo the routing
                    log.error("hook.failed", hook=getattr(hook, "__qualname__", "?"),
                              error=type(exc).__name__)  # fmt: skip

    async def _shape(
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
        shaped = shape(effects, views, answer)
        if shaped.offers and self.metrics is not None:
            self.metrics.offered(shaped.offers)
        for agent in shaped.offline:
            self._watch_offline(agent)
        return shaped.frames, shaped.states

    # -- agent sessions --------------------------------------------------------------------------

    @property
    def desktops(self) -> dict[str, int]:
        """Agent → desktops connected to this node."""
        return dict(self._sessions)

    async def connect(self, identity: AgentIdentity) -> None:
        """A desktop connected: log the agent in (away) and cancel a pending disconnect."""
        pending = self._away.pop(identity.id, None)
        if pending is not None:
            pending.cancel()
        try:
            effects = await self.engine.login(
                identity.id, identity.tier, identity.capacity, skills=identity.skills
            )
        except RoutingError as exc:
            raise ServiceError(exc.code, exc.message) from exc
        self._sessions[identity.id] = self._sessions.get(identity.id, 0) + 1
        self.identities[identity.id] = identity
        await self.store.desktop(identity.id, self.node, 0, count=self._sessions[identity.id])
        await self.apply_effects(effects)
        log.info("agent.connected", agent=identity.id, tier=identity.tier, node=self.node)

    async def disconnect(self, identity: AgentIdentity) -> None:
        """A desktop went away. With none left: offline after the grace, release later."""
        left = self._sessions.get(identity.id, 1) - 1
        if left > 0:
            self._sessions[identity.id] = left
            with contextlib.suppress(Exception):  # the count is refreshed on a fence
                await self.store.desktop(identity.id, self.node, 0, count=left)
            return
        self._sessions.pop(identity.id, None)
        self.identities.pop(identity.id, None)
        try:
            elsewhere = await self.store.desktop(identity.id, self.node, 0, count=0)
        except Exception:
            elsewhere = 0  # the store is down: the grace decides, as on one node
        if elsewhere:  # a desktop on another node keeps the agent online
            log.info("agent.disconnected", agent=identity.id, node=self.node, elsewhere=elsewhere)
            return
        if not self._stopping.is_set() and identity.id not in self._away:
            self._away[identity.id] = asyncio.create_task(self._absent(identity.id))
        log.info("agent.disconnected", agent=identity.id, node=self.node)

    async def _absent(self, agent: str, grace_s: float | None = None) -> None:
        """Offline after the grace (offers re-routed); assigned work re-queued after longer."""
        grace = self.offline_grace_s if grace_s is None else grace_s
        try:
            if grace_s is None:
                await asyncio.sleep(grace)
                if await self.store.desktop(agent, self.node, 0) > 0:
                    return  # connected on another node meanwhile: it stays online
                await self.apply_effects(await self.engine.logout(agent))
            await asyncio.sleep(max(0.0, self.release_after_s - grace))
            view = await self.engine.agent_view(agent)
            if view is None or view["chosen"] != "offline":
                return  # it came back (on some node): its work stays with it
            for task_id in view["tasks"]:
                task = await self.engine.task_view(task_id)
                if task is not None and task["state"] == "assigned":
                    with contextlib.suppress(RoutingError):
                        await self.apply_effects(await self.engine.release(task_id, agent))
        except RoutingError as exc:
            log.warning("agent.absent_failed", agent=agent, code=exc.code)
        finally:
            if self._away.get(agent) is asyncio.current_task():
                del self._away[agent]

    def _watch_offline(self, agent: str) -> None:
        """An agent went offline without a socket on this node (e.g. its node died): give its
        assigned work back after `release_after_s`, unless it comes back meanwhile."""
        if agent in self._sessions or agent in self._away or self._stopping.is_set():
            return
        self._away[agent] = asyncio.create_task(self._absent(agent, grace_s=0.0))

    async def heartbeat_many(self, identities: Sequence[AgentIdentity]) -> None:
        """Keep every given agent's presence alive in one engine call; log in again those
        whose presence had expired."""
        results = await self.engine.heartbeat_many([i.id for i in identities])
        for identity, result in zip(identities, results, strict=True):
            if isinstance(result, RoutingError):
                effects = await self.engine.login(
                    identity.id, identity.tier, identity.capacity, skills=identity.skills
                )
                await self.apply_effects(effects)

    # -- agent requests --------------------------------------------------------------------------

    async def _engine(self, call: Any, *args: Any, **kwargs: Any) -> list[Effect]:
        try:
            effects: list[Effect] = await call(*args, **kwargs)
        except RoutingError as exc:
            raise ServiceError(exc.code, exc.message) from exc
        return effects

    async def presence(self, identity: AgentIdentity, state: str, ref: Any = None) -> None:
        """`presence.set`: answered by a `presence` frame, also when nothing changed."""
        effects = await self._engine(self.engine.set_presence, identity.id, state)
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
            effects = await self._engine(self.engine.accept, reservation, identity.id)
            await self.apply_effects(effects, answer)
            return
        deciding = self._engine(self.engine.accept, reservation, identity.id)
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
    ) -> dict[str, Any] | None:
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
                out.append({"conversation": task_id.split("~", 1)[0], "state": task["state"]})
        return out

    async def reject(
        self, identity: AgentIdentity, reservation: str, reason: str | None = None, ref: Any = None
    ) -> None:
        effects = await self._engine(self.engine.reject, reservation, identity.id)
        await self.apply_effects(effects, (identity.id, ref, None))
        log.info("offer.rejected", agent=identity.id, reservation=reservation)

    async def _holding(self, identity: AgentIdentity, conversation: str) -> dict[str, Any]:
        task = await self.engine.task_view(conversation)
        if task is None:
            raise ServiceError("not_found", f"conversation {conversation} is not open")
        if task["agent"] != identity.id:
            raise ServiceError("forbidden", f"conversation {conversation} is not yours")
        return task

    async def send_message(
        self,
        identity: AgentIdentity,
        conversation: str,
        body: str,
        channel: str | None = None,
        ref: Any = None,
    ) -> Interaction:
        """`message.send`: store the reply, count it, hand it to the channel's port."""
        if not isinstance(body, str) or not body or len(body.encode()) > MAX_BODY:
            raise ServiceError("invalid", "body must be 1 byte to 64 KiB of text")
        task = await self._holding(identity, conversation)
        if task["state"] != "assigned":
            raise ServiceError("conflict", f"conversation {conversation} is {task['state']}")
        conv = await self.store.conversation(conversation)
        if conv is None:
            raise ServiceError("not_found", f"conversation {conversation} is not known")
        if not await self.visible(identity, conv.customer):
            raise ServiceError("forbidden", "this customer is not for your tier")
        if channel is None:  # the customer's last text channel: nobody types into a call
            text = [c for c in (conv.last_channel, *reversed(conv.channels)) if c != "voice"]
            channel = text[0] if text else "voice"
        if channel not in CHANNELS:
            raise ServiceError("invalid", f"channel must be one of {', '.join(CHANNELS)}")
        if channel == "voice":
            raise ServiceError("invalid", "a reply cannot be sent on a call", {"field": "channel"})
        try:  # a reply its channel cannot carry at all is refused before anything is stored
            self.outbound.check(await self.outbound_message(conv, channel, body, "", identity.id))
        except ChannelRefused as exc:
            raise ServiceError(exc.code, exc.message) from exc
        # the reply and the job that sends it, in one step, before the agent hears `ack`:
        # whichever node is alive sends it (router.replies)
        interaction = await self.store.add_outbound(
            conversation, channel, body, identity.id, self.now_ms(), send=True
        )
        frame = {
            "type": "ack",
            "ref": ref,
            "conversation": conversation,
            "customer": conv.customer,  # lets the send-time tier filter judge the body inside
            "interaction": interaction.wire(),
        }
        await self.store.push([(identity.id, frame)])
        log.info("message.sent", agent=identity.id, conversation=conversation, channel=channel)
        return interaction

    async def outbound_message(
        self,
        conv: Conversation,
        channel: str,
        body: str,
        interaction: str,
        agent: str,
        history: Sequence[Interaction] | None = None,
    ) -> OutboundMessage:
        """What a channel port needs to reply: addresses and the customer's last inbound meta
        (from `history`, the customer's latest interactions, when the caller has read them)."""
        customer = await self.store.customer(conv.customer)
        if history is None:
            history = await self.store.history(conv.customer, self.history_limit)
        reply_meta: dict[str, Any] = {}
        recent = history[-self.history_limit :] if self.history_limit else []
        for earlier in reversed(recent):
            if earlier.direction == "in" and earlier.channel == channel:
                reply_meta = dict(earlier.meta)
                if earlier.subject and "subject" not in reply_meta:
                    reply_meta["subject"] = earlier.subject
                break
        return OutboundMessage(
            conversation=conv.id,
            customer=conv.customer,
            channel=channel,
            body=body,
            interaction=interaction,
            agent=agent,
            addresses=customer.addresses if customer else (),
            reply_meta=reply_meta,
            site=customer.site if customer else None,
        )

    async def complete(
        self,
        identity: AgentIdentity,
        conversation: str,
        disposition: str | None = None,
        ref: Any = None,
    ) -> None:
        try:
            effects = await self._engine(self.engine.complete, conversation, identity.id)
        except ServiceError as exc:
            if (
                exc.code != "conflict"
                or await self._held_by(identity, conversation, "wrapup") is None
            ):
                raise
            # completed before: a retry whose answer was lost — say it again, state and all
            log.info("conversation.complete_repeated", agent=identity.id, conversation=conversation)
            effects = []
        wrapup = [] if any(isinstance(e, TaskEnded) for e in effects) else [
            (conversation, "wrapup", identity.id)
        ]  # fmt: skip
        await self.apply_effects(effects, (identity.id, ref, None), states=wrapup)

    async def wrapup_done(
        self, identity: AgentIdentity, conversation: str, ref: Any = None
    ) -> None:
        effects = await self._engine(self.engine.wrapup_done, conversation, identity.id)
        await self.apply_effects(effects, (identity.id, ref, None))

    async def transfer(
        self,
        identity: AgentIdentity,
        conversation: str,
        to_agent: str | None = None,
        to_tier: str | None = None,
        ref: Any = None,
    ) -> None:
        effects = await self._engine(
            self.engine.transfer, conversation, identity.id, to_agent=to_agent, to_tier=to_tier
        )
        await self.apply_effects(effects, (identity.id, ref, None))

    async def _visible_customer(self, identity: AgentIdentity, customer_id: str) -> Customer:
        customer = await self.store.customer(customer_id)
        if customer is None:
            raise ServiceError("not_found", f"customer {customer_id} is not known")
        if not self.engine.policy.allowed(customer.client_group, identity.tier):
            raise ServiceError("forbidden", "this customer is not for your tier")
        return customer

    async def get_customer(self, identity: AgentIdentity, customer: str, ref: Any = None) -> None:
        found = await self._visible_customer(identity, customer)
        frame = {"type": "customer", "customer": customer_view(found), "ref": ref}
        await self.store.push([(identity.id, frame)])

    async def update_customer(
        self,
        identity: AgentIdentity,
        customer: str,
        version: int,
        fields: Mapping[str, Any],
        ref: Any = None,
    ) -> None:
        """Versioned edit: a stale version is refused with the current customer."""
        for name, value in fields.items():
            if name not in EDITABLE_FIELDS:
                raise ServiceError("invalid", f"{name} is not editable", {"field": name})
            if not isinstance(value, str) or len(value) > MAX_FIELD[name]:
                raise ServiceError("invalid", f"{name} must be text", {"field": name})
        await self._visible_customer(identity, customer)
        try:
            updated = await self.store.update_customer(customer, version, fields)
        except StaleVersion as stale:
            raise ServiceError(
                "conflict",
                f"customer {customer} changed since version {version}",
                {"customer": customer_view(stale.current)},
            ) from stale
        frame = {"type": "customer", "customer": customer_view(updated), "ref": ref}
        await self.store.push([(identity.id, frame)])
        log.info("customer.updated", agent=identity.id, customer=customer, fields=sorted(fields))

    async def classify(
        self, identity: AgentIdentity, customer: str, group: str, ref: Any = None
    ) -> None:
        """Mark SIC/CSC (or back to normal): work held by now-ineligible agents is revoked."""
        if group not in GROUPS:
            raise ServiceError("invalid", f"group must be one of {', '.join(GROUPS)}")
        await self._visible_customer(identity, customer)
        updated = await self.store.set_group(customer, group)
        effects = await self._engine(self.engine.reclassify, customer, group)
        await self.apply_effects(effects)
        frame = {"type": "ack", "ref": ref, "customer": customer, "client_group": group}
        await self.store.push([(identity.id, frame)])
        log.info(
            "customer.classified", agent=identity.id, customer=customer, version=updated.version
        )

    async def visible(self, identity: AgentIdentity, customer_id: str) -> bool:
        """The hard filter, now: may this agent see anything of this customer?"""
        group = await self.store.client_group(customer_id)
        return group is None or self.engine.policy.allowed(group, identity.tier)
