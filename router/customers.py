"""Customers as agents see them: the card (`customer.get`), versioned edits
(`customer.update`), the client group (`customer.classify`) and the hard filter behind all of
them — an agent sees nothing of a customer its tier may not serve.

It works through its `Service` (store, engine policy, effects → frames); the frames are
`router.frames`'; a profile edit runs the guidance rules again (`router.guidance`, through the
Service). Imports `store`, `queues.policy` (the client groups) and `router.frames`,
`router.errors`, `router.identity`; no aiohttp.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from queues.policy import GROUPS
from router.errors import ServiceError
from router.frames import Frame, classified_frame, conversation_view, customer_frame, customer_view
from router.identity import AgentIdentity
from store.errors import StaleVersion
from store.model import Customer, edit_refusal

if TYPE_CHECKING:
    from router.service import Service

log = structlog.get_logger("omniroute.service")


class Customers:
    """See the module docstring; one per `Service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def _visible_customer(self, identity: AgentIdentity, customer_id: str) -> Customer:
        svc = self.service
        customer = await svc.store.customer(customer_id)
        if customer is None:
            raise ServiceError("not_found", f"customer {customer_id} is not known")
        if not svc.engine.policy.allowed(customer.client_group, identity.tier):
            raise ServiceError("forbidden", "this customer is not for your tier")
        return customer

    async def get(self, identity: AgentIdentity, customer: str, ref: Any = None) -> None:
        found = await self._visible_customer(identity, customer)
        await self.service.store.push([(identity.id, customer_frame(found, ref))])

    async def update(
        self,
        identity: AgentIdentity,
        customer: str,
        version: int,
        fields: Mapping[str, Any],
        ref: Any = None,
    ) -> None:
        """Versioned edit: a stale version is refused with the current customer."""
        for name, value in fields.items():
            refused = edit_refusal(name, value)
            if refused:
                raise ServiceError("invalid", f"{name} {refused}", {"field": name})
        await self._visible_customer(identity, customer)
        svc = self.service
        try:
            updated = await svc.store.update_customer(customer, version, fields)
        except StaleVersion as stale:
            raise ServiceError(
                "conflict",
                f"customer {customer} changed since version {version}",
                {"customer": customer_view(stale.current)},
            ) from stale
        frames = [customer_frame(updated, ref), *await self._guidance(identity, updated)]
        await svc.store.push([(identity.id, frame) for frame in frames])
        log.info("customer.updated", agent=identity.id, customer=customer, fields=sorted(fields))

    async def _guidance(self, identity: AgentIdentity, customer: Customer) -> list[Frame]:
        """The profile changed: the guidance rules again, for the agent's conversation with
        this customer (router.guidance), when the agent holds it."""
        svc = self.service
        conv_id = customer.open_conversation
        if not conv_id or not svc.guidance.rules:
            return []
        task = await svc.engine.task_view(conv_id)
        if task is None or task["agent"] != identity.id:
            return []
        view = await svc.store.view(conv_id, svc.history_limit)
        return svc.guide(conversation_view(conv_id, view))

    async def classify(
        self, identity: AgentIdentity, customer: str, group: str, ref: Any = None
    ) -> None:
        """Mark SIC/CSC (or back to normal): work held by now-ineligible agents is revoked."""
        if group not in GROUPS:
            raise ServiceError("invalid", f"group must be one of {', '.join(GROUPS)}")
        await self._visible_customer(identity, customer)
        svc = self.service
        updated = await svc.store.set_group(customer, group)
        effects = await svc.engine_call(svc.engine.reclassify, customer, group)
        await svc.apply_effects(effects)
        await svc.store.push([(identity.id, classified_frame(customer, group, ref))])
        log.info(
            "customer.classified", agent=identity.id, customer=customer, version=updated.version
        )

    async def visible(self, identity: AgentIdentity, customer_id: str) -> bool:
        """The hard filter, now: may this agent see anything of this customer?"""
        svc = self.service
        group = await svc.store.client_group(customer_id)
        return group is None or svc.engine.policy.allowed(group, identity.tier)
