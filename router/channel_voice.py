"""The voice (CTI) channel at the edge: `POST /v1/channels/voice/events` and PBX `connect`s.

Inbound, the route is `/v1/events`' handler (`router.ingest.IngestHandler`: size → signature
over the raw body → parse → store, with the same refusals, logs and metrics) with the PBX's
event shape (`channels.voice.parse_call_event`) as its parser: 413 above 64 KiB, 401 for a bad
`X-Omniroute-Signature`, 400 with the contract's error body, 202 `{"accepted", "duplicates",
"conversations"}`.

Outbound, `VoiceConnector.on_effect` is one of `Service.hooks`, run before the agent is
told: when a voice task is `Assigned` (an agent accepted a call, or one was handed to it) it
writes the `connect` as a durable job (`router.replies`). Only the job loop sends it: the log
hands each job to one node at a time (the one blocked on it first, often not the node that
wrote it), which asks the PBX to connect the call to the agent's endpoint
(`channels.voice.PbxClient`: signed, bounded retries). Should that node die first, the node
that takes its jobs over sends the command; the PBX can recognise that repeat by its
`call_id`. Sending it also where it was written would make every job another node reads a
second `connect`. The routing never waits for the PBX. One `aiohttp.ClientSession` is shared
by every command; it lives from the app's startup to its cleanup. `settle` runs in cleanup
before the service closes its store (`router.app`): from then on no new connect is taken, and
the ones in flight finish (bounded) and still note their job done. `connects` counts them by
outcome.

Agents cannot type into a call: `VoicePort` refuses `message.send` on channel `voice` with an
`invalid` error the agent sees, rather than recording a reply that would go nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Final

import aiohttp
import structlog
from aiohttp import web

from channels.base import ChannelRefused, OutboundMessage, OutboundPort
from channels.voice import MAX_BYTES, BadCall, PbxClient, PbxUnreachable, call_document
from queues.effects import Assigned, Effect
from router.campaign_dial import CampaignDialer
from router.campaigns import parse_task
from router.codec import JSON
from router.errors import BadEvent, DecodeError
from router.ingest import BODY_TIMEOUT_S, Admit, Ingest, IngestHandler, Refused
from router.protocol import validate_event
from router.service import Service
from router.settings import Settings
from store.model import InboundEvent

log = structlog.get_logger("omniroute.voice")

PATH: Final = "/v1/channels/voice/events"
TIMEOUT_S: Final = 5.0  # one attempt at the PBX, connect to last byte
DRAIN_S: Final = 3.0  # how long cleanup lets connects in flight finish


def parse_call_event(body: bytes, default_region: str) -> InboundEvent:
    """One PBX event (raw JSON bytes) → `InboundEvent`; raises `BadEvent` naming the field."""
    try:
        raw = JSON.decode_map(body)
    except DecodeError as exc:
        raise BadEvent(exc.message) from None
    try:
        document = call_document(raw, default_region)
    except BadCall as exc:
        raise BadEvent(exc.message, exc.field) from None
    return validate_event(document)


class VoiceEvents(IngestHandler):
    """`POST /v1/channels/voice/events`: `IngestHandler` with the PBX's event shape."""

    def __init__(
        self,
        ingest: Ingest,
        webhook_secret: str,
        default_region: str,
        on_result: Callable[[str, int], None] | None = None,
        *,
        body_timeout_s: float = BODY_TIMEOUT_S,
        admit: Admit | None = None,
    ) -> None:
        super().__init__(
            ingest, webhook_secret, MAX_BYTES, on_result, body_timeout_s=body_timeout_s, admit=admit
        )
        self._region = default_region

    # IngestHandler._parse is a staticmethod there; an instance method here needs the region
    def _parse(self, body: bytes, content_type: str | None) -> list[InboundEvent]:  # type: ignore[override]
        try:
            return [parse_call_event(body, self._region)]
        except BadEvent as exc:
            raise Refused("invalid", exc.message, exc.field, log_field=exc.log_field) from None


class VoicePort(OutboundPort):
    """The outbound port of channel `voice`: there is no text to send on a call."""

    def check(self, message: OutboundMessage) -> None:
        raise ChannelRefused("a call carries no text: reply on chat, sms or email", "invalid")

    async def send(self, message: OutboundMessage) -> None:
        log.warning("voice.reply_refused", conversation=message.conversation, agent=message.agent)
        raise ChannelRefused("a call carries no text: reply on chat, sms or email", "invalid")


class VoiceConnector:
    """Turns voice assignments into PBX `connect` commands (see the module docstring)."""

    def __init__(
        self,
        service: Service,
        pbx_url: str,
        webhook_secret: str,
        *,
        attempts: int = 4,
        backoff_s: float = 0.25,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.service = service
        self.timeout_s = timeout_s
        self.client: PbxClient | None = None
        if pbx_url:
            self.client = PbxClient(pbx_url, webhook_secret, self._post, attempts, backoff_s)
        self._session: aiohttp.ClientSession | None = None
        self.pending: set[asyncio.Task[bool]] = set()  # connects in flight
        self._settling = False  # cleanup began: no new connect, the ones in flight finish
        self.connects: Counter[str] = Counter()  # finished connects: "sent" or "failed"

    async def run(self, app: web.Application) -> AsyncIterator[None]:
        """A cleanup context: the shared HTTP session from startup to cleanup."""
        if self.client is None:
            log.warning("voice.pbx_unconfigured", detail="[voice] pbx_url is empty: no connects")
        else:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
        try:
            yield
        finally:
            await self.drain()

    async def settle(self, app: web.Application) -> AsyncIterator[None]:
        """A cleanup context registered after the service's: before the service closes its
        store, take no new connect and let the ones in flight finish (bounded)."""
        yield
        self._settling = True
        if self.pending:
            await asyncio.wait(set(self.pending), timeout=DRAIN_S)

    @property
    def running(self) -> bool:
        """Between startup and cleanup: the shared session is open."""
        return self._session is not None and not self._settling

    async def drain(self, wait_s: float = DRAIN_S) -> None:
        """Let commands in flight finish (bounded), cancel the rest, close the session."""
        if self.pending:
            _done, late = await asyncio.wait(set(self.pending), timeout=wait_s)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def on_effect(self, effect: Effect) -> None:
        """A `Service` hook (run before the agent is told): the `connect` of a voice
        assignment becomes a durable job, which the job loop sends (`run_job`)."""
        if not isinstance(effect, Assigned) or effect.channel != "voice":
            return
        if parse_task(effect.task) is not None:
            return  # a campaign contact: a `dial`, not a `connect` (router.campaign_dial)
        if self.client is None:
            log.debug("voice.connect_skipped", task=effect.task, reason="no_pbx_url")
            return
        identity = self.service.identities.get(effect.agent)
        endpoint = identity.endpoint if identity is not None else None
        job = {"kind": "connect", "task": effect.task, "agent": effect.agent}
        await self.service.store.add_job({**job, "endpoint": endpoint or ""})

    async def run_job(self, job_id: str, fields: Mapping[str, Any]) -> None:
        """The `connect` job, on whichever node the job loop handed it to. Given up (not
        retried) once the PBX client gave up: a connect that late would ring nobody. The
        command runs as a task of its own that acknowledges its job: a node stopping cancels
        its job loop, not the command, which cleanup (`settle`, before the store closes) lets
        finish. Only a job whose command was cut off, or whose note failed, is sent again by
        another node."""
        if self.client is None or not self.running:
            raise PbxUnreachable("stopped")  # left for a node that can send it
        sending = asyncio.create_task(self._connect_job(job_id, fields))
        self.pending.add(sending)
        sending.add_done_callback(self._sent)
        await asyncio.shield(sending)

    def _sent(self, sending: asyncio.Task[bool]) -> None:
        self.pending.discard(sending)
        if not sending.cancelled() and sending.exception() is not None:  # e.g. the note failed
            log.warning("voice.connect_job_failed", error=type(sending.exception()).__name__)

    async def _connect_job(self, job_id: str, fields: Mapping[str, Any]) -> bool:
        endpoint = str(fields.get("endpoint") or "") or None
        delivered = await self.connect(str(fields["task"]), str(fields["agent"]), endpoint, True)
        await self.service.store.ack_jobs([job_id])  # done, whatever became of the job loop
        return delivered

    async def connect(
        self, task: str, agent: str, endpoint: str | None = None, known: bool = False
    ) -> bool:
        """Look up the call (and the agent's endpoint, unless `known` or given); send the
        command. True when delivered; counted in `connects` either way."""
        delivered = await self._connect(task, agent, endpoint, known)
        self.connects["sent" if delivered else "failed"] += 1
        return delivered

    async def _connect(self, task: str, agent: str, endpoint: str | None, known: bool) -> bool:
        if self.client is None:
            return False
        try:
            call_id = await self.service.call_id_of(task)
        except Exception as exc:  # the store failed us: nothing to connect with
            log.error("voice.connect_failed", task=task, agent=agent, error=type(exc).__name__)
            return False
        if not call_id:
            log.error("voice.connect_skipped", task=task, agent=agent, reason="no_call_id")
            return False
        if endpoint is None and not known:
            identity = self.service.identities.get(agent)
            endpoint = identity.endpoint if identity is not None else None
        if endpoint is None:
            # the PBX may know the agent's phone itself; it decides what to do without one
            here = agent in self.service.identities
            reason = "no_endpoint_claim" if known or here else "agent_not_on_this_node"
            log.warning("voice.endpoint_missing", task=task, agent=agent, reason=reason)
        return await self.client.connect(call_id, agent, endpoint)

    async def _post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """The transport of `PbxClient`: one POST on the shared session."""
        session = self._session
        if session is None:
            raise PbxUnreachable("stopped")
        try:
            async with session.post(
                url, data=body, headers=dict(headers), allow_redirects=False
            ) as response:
                return response.status  # the answer's body is not read: only its status counts
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PbxUnreachable(type(exc).__name__) from None


VOICE_KEY: Final = web.AppKey("voice", VoiceConnector)


def add_voice(app: web.Application, service: Service, settings: Settings) -> None:
    """Serve the PBX's events, register the outbound port and the `connect` hook."""

    def count(kind: str, n: int) -> None:
        if service.metrics is not None:
            service.metrics.ingested(kind, n)

    events = VoiceEvents(
        service.ingest,
        settings.webhook_secret,
        settings.sms.default_region,
        count,
        body_timeout_s=settings.connections.body_timeout_s,
        admit=service.admit,
    )
    app.router.add_post(PATH, events.handle)
    connector = VoiceConnector(service, settings.voice.pbx_url, settings.webhook_secret)
    service.outbound.register("voice", VoicePort())
    service.hooks.append(connector.on_effect)
    service.replies.handle("connect", connector.run_job)
    dialer = CampaignDialer(service.campaigns, connector)  # a campaign's preview `dial`
    service.hooks.append(dialer.on_effect)
    service.replies.handle("dial", dialer.run_job)
    app[VOICE_KEY] = connector
    app.cleanup_ctx.append(connector.run)
