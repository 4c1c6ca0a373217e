"""Campaigns at run time: the loop that feeds contacts to the engine, their routing, and the
agent's outcome (docs/campaigns.md).

**The loop** (`run`, on every node; any number may run at once): every `[campaigns] tick_s`,
for each running campaign inside its window, `CampaignStore.claim` hands this node up to
`batch` due contacts (never more than `max_queued` in line) — atomically, so no two nodes take
one. Each claimed contact is sent into the durable event log as a `campaign.contact` event
whose id `cp:<campaign>:<contact>:<n>` is fixed by the claim number `n`: ingest deduplicates
it, so sending it again (`recover`: a node died between claim and send) makes no second entry.
A campaign paused, stopped or outside its window has its contacts still waiting in line taken
back (`recall`: the contact first, then the task, so a crash between them leaves a stale task
the dial step refuses, never a lost contact).

**Routing** (`route`, from `router.inbound` when the consumer reads the event): the customer
and the one conversation come from the store as for any event; the contact must still be at
claim `n` and `queued`. A customer already busy with an agent or waiting inbound is tried
again after `retry.after_s` (no call was made). Else the engine gets the outbound task
`<conversation>~cp:<campaign>:<contact>:<n>` (`Enqueue.outbound` = the campaign's tiers), and
its offer reaches an agent only by the blending rule of docs/routing.md ("Outbound work").

**The outcome** (`complete`): `conversation.complete` with a disposition from the campaign's
list is recorded on the contact first (a retry disposition → `retrying` after
`retry.after_s`, or `exhausted` at `retry.max_attempts`; another → `done`), conditionally on
claim `n`, then the engine completes the task: a crash between them loses nothing, a repeat
counts nothing twice. The dial after `offer.accept` is `router.campaign_dial`'s.

Logs carry ids only (campaign, contact, claim, conversation), never phones or names.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import structlog

from queues.args import Enqueue
from queues.effects import Assigned, Effect, Offer
from queues.errors import RoutingError
from router.campaign_spec import in_window
from router.errors import ServiceError
from router.frames import Frame
from router.identity import AgentIdentity
from router.settings import CampaignSettings
from store.campaigns import CampaignStore, Record
from store.campaigns_memory import MemoryCampaigns
from store.model import HELD_STATES, Conversation, Customer, InboundEvent, LogEntry

if TYPE_CHECKING:
    from router.service import Service

log = structlog.get_logger("omniroute.campaigns")

EVENT_TYPE: Final = "campaign.contact"  # the log's event for a claimed contact (store.model)
MARK: Final = "~cp:"  # in a task id: `<conversation>~cp:<campaign>:<contact>:<n>`


def task_id(conversation: str, campaign: str, contact: str, n: int) -> str:
    return f"{conversation}{MARK}{campaign}:{contact}:{n}"


def parse_task(task: str) -> tuple[str, str, int] | None:
    """(campaign, contact, n) of an outbound task id, else None."""
    if MARK not in task:
        return None
    campaign, contact, n = task.split(MARK, 1)[1].split(":")
    return campaign, contact, int(n)


def call_id(campaign: str, contact: str, n: int) -> str:
    """The PBX call id of a claim's dial: the same on every node and every repeat."""
    return f"dial:{campaign}:{contact}:{n}"


class Campaigns:
    """See the module docstring; one per `Service`."""

    def __init__(
        self,
        service: Service,
        store: CampaignStore | None = None,
        settings: CampaignSettings | None = None,
    ) -> None:
        self.service = service
        self.store = store or MemoryCampaigns()
        self.settings = settings or CampaignSettings()
        self._records: dict[str, Record] = {}  # name, tiers, dispositions: never change

    # -- the loop --------------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        """Tick until stopped; a failed tick (the store is down) is tried at the next one."""
        while not stopping.is_set():
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("campaigns.tick_failed", node=self.service.node,
                            error=type(exc).__name__)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.settings.tick_s)

    async def tick(self) -> None:
        """One pass over every campaign: claim and send, recover, or take back."""
        now_ms = self.service.now_ms()
        for campaign in await self.store.campaigns():
            try:
                await self._tick_one(campaign, now_ms)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one campaign's failure never stops the others
                log.error("campaigns.campaign_failed", campaign=campaign["id"],
                          error=type(exc).__name__)  # fmt: skip

    async def _tick_one(self, campaign: Record, now_ms: int) -> None:
        cid = campaign["id"]
        self._records.setdefault(cid, campaign)
        live = campaign["state"] == "running" and in_window(campaign, now_ms / 1000)
        if not live:
            if campaign["counts"].get("queued"):
                await self.recall(cid)
            return
        for contact in await self.store.claim(cid, now_ms, self.settings.batch):
            await self.send(cid, contact)
        if campaign["counts"].get("queued"):
            await self.recover(campaign, now_ms)

    async def send(self, campaign: str, contact: Mapping[str, Any]) -> None:
        """Put a claimed contact into the event log (deduplicated by its claim's event id)."""
        n = int(contact["n"])
        event = InboundEvent(
            id=f"cp:{campaign}:{contact['id']}:{n}",
            type=EVENT_TYPE,
            channel="voice",
            sender=str(contact.get("phone") or ""),
            customer_id=str(contact.get("customer_id") or "") or None,
            meta={"campaign": campaign, "contact": contact["id"], "n": n},
        )
        await self.service.store.ingest([event], self.service.now_ms())
        log.info("campaign.contact_sent", campaign=campaign, contact=contact["id"], n=n)

    async def recover(self, campaign: Record, now_ms: int) -> None:
        """Contacts claimed `recover_s` ago and still without a task: sent again (ingest drops
        a repeat), or, routed already, enqueued again (the engine refuses a live one)."""
        cid, grace_ms = campaign["id"], round(self.settings.recover_s * 1000)
        for contact in await self.store.in_line(cid):
            if contact["status"] != "queued" or now_ms - int(contact["due_ms"]) < grace_ms:
                continue
            conv = str(contact.get("conversation") or "")
            if not conv:
                await self.send(cid, contact)
                continue
            task = task_id(conv, cid, contact["id"], int(contact["n"]))
            if await self.service.engine.task_view(task) is None:
                conversation = await self.service.store.conversation(conv)
                if conversation is None:
                    continue
                customer = await self.service.store.customer(conversation.customer)
                if customer is not None:
                    log.info("campaign.contact_recovered", campaign=cid, contact=contact["id"])
                    await self._enqueue(task, customer, campaign)

    async def recall(self, campaign: str) -> None:
        """Take back the contacts still waiting in line (paused, stopped, out of its window):
        due again at once; a task an agent already holds is left to finish."""
        now_ms = self.service.now_ms()
        for contact in await self.store.in_line(campaign):
            if contact["status"] != "queued":
                continue
            n, conv = int(contact["n"]), str(contact.get("conversation") or "")
            back = "retrying" if contact["outcomes"] else "pending"
            if conv:
                view = await self.service.engine.task_view(
                    task_id(conv, campaign, contact["id"], n)
                )
                if view is not None and view["state"] not in ("queued", "reserved"):
                    continue  # accepted: the call goes on
            if await self.store.mark(campaign, contact["id"], n, ["queued"], back, due_ms=now_ms):
                await self.withdraw(campaign, contact)

    async def withdraw(self, campaign: str, contact: Mapping[str, Any]) -> None:
        """Withdraw the contact's task if it is in line or offered (do-not-call, recall)."""
        conv = str(contact.get("conversation") or "")
        if not conv:
            return  # not routed yet: routing will find the contact no longer queued
        task = task_id(conv, campaign, contact["id"], int(contact["n"]))
        try:
            effects = await self.service.engine.withdraw(task)
        except RoutingError:
            return  # gone, or taken by an agent already
        await self.service.apply_effects(effects)
        log.info("campaign.contact_withdrawn", campaign=campaign, contact=contact["id"])

    # -- routing ---------------------------------------------------------------------------------

    async def record(self, campaign: str) -> Record | None:
        """The campaign's record (its fixed parts, cached on this node)."""
        found = self._records.get(campaign)
        if found is None:
            found = await self.store.campaign(campaign)
            if found is not None:
                self._records[campaign] = found
        return found

    async def route(self, entry: LogEntry, conv: Conversation, customer: Customer) -> None:
        """A `campaign.contact` entry: the contact's outbound task, or a later try."""
        meta = entry.event.meta
        cid, contact_id, n = str(meta["campaign"]), str(meta["contact"]), int(meta["n"])
        contact = await self.store.contact(cid, contact_id)
        campaign = await self.record(cid)
        if campaign is None or contact is None or contact["n"] != n:
            return
        if contact["status"] != "queued":
            return  # taken back or on the do-not-call list meanwhile
        if contact.get("conversation") == conv.id and await self.service.engine.task_view(
            task_id(conv.id, cid, contact_id, n)
        ):
            return  # routed before (a dead node's entry read again): its task is live already
        busy = conv.state in HELD_STATES and conv.agent
        if busy or await self.service.engine.task_view(conv.id) is not None:
            later = self.service.now_ms() + round(campaign["retry"]["after_s"] * 1000)
            back = "retrying" if contact["outcomes"] else "pending"
            await self.store.mark(cid, contact_id, n, ["queued"], back, due_ms=later)
            log.info("campaign.customer_busy", campaign=cid, contact=contact_id, n=n)
            return
        if await self.store.mark(cid, contact_id, n, ["queued"], "queued", conversation=conv.id):
            await self._enqueue(task_id(conv.id, cid, contact_id, n), customer, campaign)

    async def _enqueue(self, task: str, customer: Customer, campaign: Record) -> None:
        attrs: dict[str, Any] = {**customer.profile, "channel": "voice"}
        item = Enqueue(task, customer.id, "voice", customer.client_group, attrs,
                       outbound=campaign["tiers"])  # fmt: skip
        [decided] = await self.service.engine.enqueue_many([item])
        if isinstance(decided, RoutingError):  # in line already
            return
        await self.service.apply_effects(decided)

    async def fields(self, effects: Sequence[Effect]) -> dict[str, Frame]:
        """The extra fields of outbound offers and assignments, by task: `direction`,
        `call_id`, `campaign` {id, name, dispositions}, `contact` {id, attributes}."""
        out: dict[str, Frame] = {}
        for effect in effects:
            if not isinstance(effect, Offer | Assigned) or effect.task in out:
                continue
            parsed = parse_task(effect.task)
            if parsed is None:
                continue
            cid, contact_id, n = parsed
            campaign = await self.record(cid)
            contact = await self.store.contact(cid, contact_id)
            out[effect.task] = {
                "direction": "outbound",
                "call_id": call_id(cid, contact_id, n),  # the PBX's call events name it
                "campaign": {
                    "id": cid,
                    "name": campaign["name"] if campaign else "",
                    "dispositions": list(campaign["dispositions"]) if campaign else [],
                },
                "contact": {
                    "id": contact_id,
                    "attributes": dict(contact["attributes"]) if contact else {},
                },
            }
        return out

    # -- the outcome -----------------------------------------------------------------------------

    async def held_task(self, identity: AgentIdentity, conversation: str) -> str | None:
        """The outbound task of `conversation` the agent holds, if any."""
        view = await self.service.engine.agent_view(identity.id)
        prefix = conversation + MARK
        return next((t for t in view["tasks"] if t.startswith(prefix)), None) if view else None

    async def complete(
        self, identity: AgentIdentity, conversation: str, disposition: str | None, ref: Any
    ) -> bool:
        """`conversation.complete` of an outbound task; False when the agent holds none."""
        task = await self.held_task(identity, conversation)
        if task is None:
            return False
        cid, contact_id, n = parse_task(task) or ("", "", 0)
        campaign = await self.record(cid)
        if campaign is None:
            raise ServiceError("not_found", f"campaign {cid} is not known")
        if disposition is None or disposition not in campaign["dispositions"]:
            raise ServiceError("invalid", "disposition must be one of the campaign's",
                               {"field": "disposition"})  # fmt: skip
        view = await self.service.engine.task_view(task)
        if view is None or view["state"] not in ("assigned", "wrapup"):
            # an offer not accepted: no call was made, so no outcome is recorded
            raise ServiceError("conflict", f"task {task} is not assigned; accept it first")
        contact = await self.store.contact(cid, contact_id)
        if contact is not None:
            status, due = self.outcome(campaign, contact, disposition)
            recorded = await self.store.mark(
                cid, contact_id, n, ["queued", "in_call"], status,
                disposition=disposition, due_ms=due, now_ms=self.service.now_ms(),
            )  # fmt: skip
            log.info("campaign.outcome", campaign=cid, contact=contact_id, n=n,
                     disposition=disposition, status=status, recorded=recorded)  # fmt: skip
        try:
            effects = await self.service.engine_call(
                self.service.engine.complete, task, identity.id
            )
        except ServiceError as exc:
            view = await self.service.engine.task_view(task)
            if exc.code != "conflict" or view is None or view["state"] != "wrapup":
                raise
            effects = []  # completed before: a retry whose answer was lost
        await self.service.completed(identity, conversation, effects, ref)
        return True

    async def wrapup_done(self, identity: AgentIdentity, conversation: str, ref: Any) -> bool:
        """`wrapup.done` of an outbound task; False when the agent holds none."""
        task = await self.held_task(identity, conversation)
        if task is None:
            return False
        engine = self.service.engine
        effects = await self.service.engine_call(engine.wrapup_done, task, identity.id)
        await self.service.apply_effects(effects, (identity.id, ref, None))
        return True

    def outcome(
        self, campaign: Mapping[str, Any], contact: Mapping[str, Any], disposition: str
    ) -> tuple[str, int | None]:
        """(status, due) after this call: try again after `retry.after_s` while a retry
        disposition leaves attempts, `exhausted` when none is left, else `done`."""
        retry = campaign["retry"]
        if disposition not in retry["on"]:
            return "done", None
        attempts = len(contact["outcomes"]) + 1
        if attempts >= int(retry["max_attempts"]):
            return "exhausted", None
        return "retrying", self.service.now_ms() + round(float(retry["after_s"]) * 1000)
