"""Voice tasks: the call steps of the event log, which need the engine's view of a task first.

A call (`call.offered` with a `call_id`) for a conversation already held on another channel is
its own task `<conversation>~<call_id>`, offered preferring that agent: the held chat or mail
stays where it is and the call goes to the same person first. `call.ended`
withdraws an unanswered call (abandoned) and ends an answered one (wrap-up for the
conversation's own task); the talk time is written on the ended interaction. `call_id_of`
gives the voice adapter the PBX call id of a task.

`router.inbound` hands call steps here one by one, at their place in a batch; this module works
through its `Service` (engine, store, effects → frames). Imports `queues` and `store` shapes;
no aiohttp.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from queues.effects import TaskEnded
from store.model import Conversation, Customer, InboundEvent, Interaction

if TYPE_CHECKING:
    from router.service import Service

log = structlog.get_logger("omniroute.inbound")


class VoiceTasks:
    """See the module docstring; one per `Service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def route(
        self,
        conv: Conversation,
        customer: Customer,
        event: InboundEvent,
        call_id: str,
        interaction: Interaction | None,
    ) -> bool:
        """Voice specifics; True when the event was fully handled here.

        A call for a conversation already held on another channel is its own task
        `<conversation>~<call_id>`, preferring that agent. `call.ended` withdraws an unanswered
        call (abandoned) and starts wrap-up for an answered one; talk time is annotated.
        """
        main = await self.service.engine.task_view(conv.id)
        sub_id = f"{conv.id}~{call_id}"
        if event.type == "call.offered":
            if main is None or main["channel"] == "voice" or not main["agent"]:
                return False  # the conversation's own (first) task: the ordinary path
            if await self.service.engine.task_view(sub_id) is None:
                await self.service.inbound.enqueue(
                    sub_id, customer, "voice", main["agent"], event.skills
                )
            return True
        if event.type != "call.ended":
            return True  # call.answered: history only
        if interaction is not None:
            await self._record_talk_time(customer.id, call_id, interaction)
        sub = await self.service.engine.task_view(sub_id)
        task_id, task = (sub_id, sub) if sub is not None else (conv.id, main)
        if task is None or task["channel"] != "voice":
            return True
        if task["state"] in ("queued", "reserved"):
            await self.service.apply_effects(await self.service.engine.withdraw(task_id))
        elif task["state"] == "assigned":
            effects = await self.service.engine.complete(task_id, task["agent"])
            wrapup: list[tuple[str, str, str | None]] = []
            if task_id == conv.id and not any(isinstance(e, TaskEnded) for e in effects):
                wrapup.append((conv.id, "wrapup", task["agent"]))
            await self.service.apply_effects(effects, states=wrapup)
        return True

    async def _record_talk_time(self, customer: str, call_id: str, ended: Interaction) -> None:
        for earlier in reversed(
            await self.service.store.history(customer, self.service.history_limit)
        ):
            if earlier.type == "call.answered" and earlier.meta.get("call_id") == call_id:
                try:
                    start = datetime.fromisoformat(earlier.at.replace("Z", "+00:00"))
                    end = datetime.fromisoformat(ended.at.replace("Z", "+00:00"))
                except ValueError:
                    return
                talk_s = round(max(0.0, (end - start).total_seconds()), 3)
                await self.service.store.annotate(customer, ended.id, {"talk_s": talk_s})
                log.info("call.ended", call=call_id, talk_s=talk_s)
                return

    async def call_id_of(self, task_id: str) -> str | None:
        """The PBX call id of a voice task (from its id, else the conversation's last call)."""
        if "~" in task_id:
            return task_id.split("~", 1)[1]
        conv = await self.service.store.conversation(task_id)
        if conv is None:
            return None
        for earlier in reversed(
            await self.service.store.history(conv.customer, self.service.history_limit)
        ):
            call_id = earlier.meta.get("call_id")
            if earlier.conversation == conv.id and earlier.channel == "voice" and call_id:
                return str(call_id)
        return None
