"""Replies: the outgoing jobs of a node — agents' replies to send, commands for the PBX.

An agent's reply (`message.send`, `send`) is checked first — the agent holds the
conversation, may see its customer, and the channel's port could carry the reply — then
stored with the job that sends it in one atomic step (`Store.add_outbound(send=True)`) before
the agent's `ack`; the job loop (`run`), on whichever node is alive, takes the job
(`Store.read_jobs`: a dead node's jobs are taken over with its lease),
hands the reply to its channel's port, tells the agent what became of it (`message.status`:
`sent`, or `failed` with the reason) and only then marks the job done. A job whose reply an
earlier node already handed over (the interaction says `sent`, or carries the provider's id)
is marked done without sending again: the only window for a second send is a node dying
between the provider's answer and that note, which Twilio's API (no idempotency key) cannot
close. An email carries a Message-ID made from the interaction id, so a repeat is one message
to the receiving side. Later statuses come from the provider's callbacks
(`router.channel_sms`).

Other job kinds (`connect` for the PBX) are registered by their adapters (`handle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from channels.base import ChannelRefused, Delivered, OutboundMessage
from queues.policy import CHANNELS
from queues.views import TaskView
from router.errors import ServiceError
from router.frames import reply_taken_frame, status_frame
from router.identity import AgentIdentity
from router.protocol import MAX_BODY_BYTES
from store.model import ANNOTATE_WINDOW, Conversation, Interaction, Job, Reply

if TYPE_CHECKING:
    from router.service import Service

log = structlog.get_logger("omniroute.replies")

Handler = Callable[[str, Mapping[str, Any]], Awaitable[None]]
DONE_STATUSES = ("sent", "delivered", "failed")  # an interaction's `status` once handed over
BATCH = 20  # jobs one read asks for; no read while this many are in hand


class Replies:
    """See the module docstring; one per `Service`."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.handlers: dict[str, Handler] = {}

    def handle(self, kind: str, handler: Handler) -> None:
        """Run `handler(job_id, fields)` for jobs of `kind`; it raises to have the job tried
        again (after `claim_idle_s`, or by the node that takes this one over)."""
        self.handlers[kind] = handler

    async def send(
        self,
        identity: AgentIdentity,
        conversation: str,
        body: str,
        channel: str | None = None,
        ref: Any = None,
    ) -> Interaction:
        """`message.send`: store the reply, count it, hand it to the channel's port."""
        svc = self.service
        if not isinstance(body, str) or not body or len(body.encode()) > MAX_BODY_BYTES:
            raise ServiceError("invalid", "body must be 1 byte to 64 KiB of text")
        task = await self._holding(identity, conversation)
        if task["state"] != "assigned":
            raise ServiceError("conflict", f"conversation {conversation} is {task['state']}")
        conv = await svc.store.conversation(conversation)
        if conv is None:
            raise ServiceError("not_found", f"conversation {conversation} is not known")
        if not await svc.visible(identity, conv.customer):
            raise ServiceError("forbidden", "this customer is not for your tier")
        if channel is None:  # the customer's last text channel: nobody types into a call
            text = [c for c in (conv.last_channel, *reversed(conv.channels)) if c != "voice"]
            channel = text[0] if text else "voice"
        if channel not in CHANNELS:
            raise ServiceError("invalid", f"channel must be one of {', '.join(CHANNELS)}")
        if channel == "voice":
            raise ServiceError("invalid", "a reply cannot be sent on a call", {"field": "channel"})
        try:  # a reply its channel cannot carry at all is refused before anything is stored
            svc.outbound.check(await self.outbound_message(conv, channel, body, "", identity.id))
        except ChannelRefused as exc:
            raise ServiceError(exc.code, exc.message) from exc
        # the reply and the job that sends it, in one step, before the agent hears `ack`:
        # whichever node is alive sends it (`run`)
        reply = Reply(conversation, channel, body, identity.id, svc.now_ms())
        interaction = await svc.store.add_outbound(reply, send=True)
        frame = reply_taken_frame(conversation, conv.customer, interaction, ref)
        await svc.store.push([(identity.id, frame)])
        log.info("message.sent", agent=identity.id, conversation=conversation, channel=channel)
        return interaction

    async def _holding(self, identity: AgentIdentity, conversation: str) -> TaskView:
        task = await self.service.engine.task_view(conversation)
        if task is None:
            raise ServiceError("not_found", f"conversation {conversation} is not open")
        if task["agent"] != identity.id:
            raise ServiceError("forbidden", f"conversation {conversation} is not yours")
        return task

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
        svc = self.service
        customer = await svc.store.customer(conv.customer)
        if history is None:
            history = await svc.store.history(conv.customer, svc.history_limit)
        reply_meta: dict[str, Any] = {}
        recent = history[-svc.history_limit :] if svc.history_limit else []
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

    async def run(self, stopping: asyncio.Event, block_ms: int = 500) -> None:
        """Do jobs until `stopping` is set, each a task of its own: a job that takes long (a
        PBX retrying, a slow relay) holds one slot, not the jobs read after it. It reads up to
        `BATCH` at a time, while fewer than `BATCH` are in hand. A read asks for a whole
        `BATCH`: this consumer's own pending jobs, which a store rereads first after a failure
        or a takeover, include the ones in hand, and a smaller read could return only those,
        again and again, and never a new one. A read that brought nothing new waits for a job
        to finish (or `block_ms`) before the next. A failed read (the store is down) is
        retried. Once stopping, the jobs in hand may finish (`NodeLoops.stop` bounds that); a
        job cancelled is left unacknowledged, to be done again."""
        svc = self.service
        running: dict[str, asyncio.Task[None]] = {}
        try:
            while not stopping.is_set():
                if len(running) >= BATCH:
                    await asyncio.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    jobs = await svc.store.read_jobs(svc.node, BATCH, block_ms)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("replies.read_failed", node=svc.node, error=type(exc).__name__)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopping.wait(), 0.5)
                    continue
                new = [job for job in jobs if job.job_id not in running]  # not twice at once
                for job in new:
                    running[job.job_id] = task = asyncio.create_task(self._do(job))
                    task.add_done_callback(functools.partial(_forget, running, job.job_id))
                if jobs and not new:
                    until = asyncio.FIRST_COMPLETED
                    await asyncio.wait(running.values(), timeout=block_ms / 1000, return_when=until)
            if running:
                await asyncio.wait(running.values())
        finally:
            for task in running.values():
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)

    async def _do(self, job: Job) -> None:
        kind = str(job.fields.get("kind", ""))
        try:
            if kind == "reply":
                await self._reply(job.fields)
            elif kind in self.handlers:
                await self.handlers[kind](job.job_id, job.fields)
            else:
                log.error("replies.unknown_kind", job=job.job_id, kind=kind[:40])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # left unacknowledged: tried again after claim_idle_s
            log.error("replies.job_failed", job=job.job_id, kind=kind, error=type(exc).__name__)
            return
        try:
            await self.service.store.ack_jobs([job.job_id])
        except Exception as exc:  # done, but not noted: done again later (see the docstring)
            log.warning("replies.ack_failed", job=job.job_id, kind=kind, error=type(exc).__name__)

    async def _reply(self, job: Mapping[str, Any]) -> None:
        svc = self.service
        customer, interaction_id = str(job["cu"]), str(job["ix"])
        history = await svc.store.history(customer, ANNOTATE_WINDOW)  # read once, used twice
        earlier = next((i for i in history if i.id == interaction_id), None)
        if earlier is not None and _handed_over(earlier.meta):
            log.info("reply.already_sent", interaction=interaction_id)
            return
        conv = await svc.store.conversation(str(job["cv"]))
        if conv is None:
            return
        message = await self.outbound_message(
            conv, str(job["ch"]), str(job["body"]), interaction_id, str(job["ag"]), history
        )
        try:
            outcome = await svc.outbound.deliver(message)
        except ChannelRefused as exc:
            outcome = Delivered("failed", exc.code)
        await self.status(conv.id, customer, interaction_id, str(job["ag"]), outcome)

    async def status(
        self, conversation: str, customer: str, interaction: str, agent: str, outcome: Delivered
    ) -> None:
        """Tell the agent what became of a reply (`message.status`)."""
        frame = status_frame(conversation, customer, interaction, outcome.status, outcome.error)
        if agent:
            await self.service.store.push([(agent, frame)])


def _forget(running: dict[str, asyncio.Task[None]], job_id: str, task: asyncio.Task[None]) -> None:
    """A job's task is done: its slot in the loop is free (`_do` logs its own failures)."""
    running.pop(job_id, None)
    if not task.cancelled() and task.exception() is not None:
        log.error("replies.job_crashed", job=job_id, error=type(task.exception()).__name__)


def _handed_over(meta: Mapping[str, Any]) -> bool:
    """The reply's interaction says a node handed it to the provider already."""
    if meta.get("sms_sid") or meta.get("sms_status") == "failed":
        return True
    return meta.get("status") in DONE_STATUSES
