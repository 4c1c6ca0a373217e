"""Preview dialling: after `offer.accept` of a campaign contact, a signed `dial` to the PBX.

`CampaignDialer.on_effect` is one of `Service.hooks` (run before the agent is told): an
`Assigned` outbound task (`router.campaigns`) marks its contact `in_call` and writes the
`dial` as a durable job (`router.replies`). The job loop hands it to one node (this one or
another; after a crash, the one that takes it over), which sends `{"type": "dial",
"call_id", "agent", "endpoint", "to", "campaign", "contact"}` to `[voice] pbx_url` exactly
like `connect` (`channels.voice.PbxClient`: signed, bounded retries), and only while the
contact is in a call at that claim and not dialled for it yet; the PBX's 2xx is noted on the contact
(`dialled_n`), so a repeat of the job after that sends nothing. `call_id` is made of the
claim (`router.campaigns.call_id`): a repeat inside the one window left (the PBX answered,
the node died before the note) carries the same id, which the PBX recognises.

The call's events come back on `POST /v1/channels/voice/events` from the customer's number and
land in the customer's one conversation like any call step. Logs carry ids only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from channels.voice import PbxUnreachable
from queues.effects import Assigned, Effect
from router.campaigns import Campaigns, call_id, parse_task
from router.frames import conversation_of

if TYPE_CHECKING:
    from router.channel_voice import VoiceConnector

log = structlog.get_logger("omniroute.campaigns")


class CampaignDialer:
    """See the module docstring; beside the voice connector, whose PBX client it shares."""

    def __init__(self, campaigns: Campaigns, voice: VoiceConnector) -> None:
        self.campaigns = campaigns
        self.voice = voice

    async def on_effect(self, effect: Effect) -> None:
        """A `Service` hook: an accepted outbound task → contact `in_call`, the `dial` job."""
        if not isinstance(effect, Assigned):
            return
        parsed = parse_task(effect.task)
        if parsed is None:
            return
        cid, contact_id, n = parsed
        store = self.campaigns.store
        moved = await store.mark(cid, contact_id, n, ["queued"], "in_call")
        contact = await store.contact(cid, contact_id)
        if not moved and (contact is None or contact["n"] != n or contact["status"] != "in_call"):
            log.warning("campaign.dial_stale", campaign=cid, contact=contact_id, n=n)
            return  # taken back meanwhile: no call for a stale claim
        identity = self.campaigns.service.identities.get(effect.agent)
        job = {
            "kind": "dial",
            "task": effect.task,
            "agent": effect.agent,
            "endpoint": (identity.endpoint if identity is not None else None) or "",
        }
        # only the job loop sends it: the log's consumer group hands a job to one node at a
        # time, so two nodes never dial one claim at once (a takeover comes after a death)
        await self.campaigns.service.store.add_job(job)

    async def run_job(self, job_id: str, fields: Mapping[str, Any]) -> None:
        """The `dial` job, on whichever node the job loop handed it to."""
        if self.voice.client is None:
            return  # no PBX configured: nothing will ever send it
        if not self.voice.running:
            raise PbxUnreachable("stopped")  # left for a node that can send it
        await self.dial(fields)

    async def dial(self, job: Mapping[str, Any]) -> bool:
        """Send the dial if the contact is in a call at this claim and not dialled for it.
        Given up (as a `connect` is) once the PBX client gave up: the agent ends the contact
        with a disposition (`no_answer`), which schedules the next try."""
        parsed = parse_task(str(job["task"]))
        client = self.voice.client
        if parsed is None or client is None:
            return False
        cid, contact_id, n = parsed
        store = self.campaigns.store
        contact = await store.contact(cid, contact_id)
        if contact is None or contact["n"] != n or contact["status"] != "in_call":
            return False
        if int(contact.get("dialled_n") or 0) == n:
            return False  # dialled already (a repeat of the job)
        to = str(contact.get("phone") or "") or await self._phone_of(str(job["task"]))
        command = {
            "call_id": call_id(cid, contact_id, n),
            "agent": str(job["agent"]),
            "endpoint": str(job.get("endpoint") or "") or None,
            "to": to,
            "campaign": cid,
            "contact": contact_id,
        }
        if not await client.dial(command):
            return False
        await store.mark(cid, contact_id, n, ["in_call"], "in_call", dialled=True,
                         now_ms=self.campaigns.service.now_ms())  # fmt: skip
        return True

    async def _phone_of(self, task: str) -> str:
        """The customer's phone when the contact named only a customer id."""
        store = self.campaigns.service.store
        conv = await store.conversation(conversation_of(task))
        customer = await store.customer(conv.customer) if conv is not None else None
        phones = [a for a in (customer.addresses if customer else ()) if a.startswith("+")]
        return phones[-1] if phones else ""
