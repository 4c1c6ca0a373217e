"""Campaign state on Redis, shared by every node. See `store.campaigns` for the contract and
`store.campaigns_memory` for the same decisions in Python.

One script per step (`store/lua/cp_*.lua`, after `queues/lua/core.lua` and
`store/lua/cp_lib.lua`, which lists the keys): every key is under the domain's hash tag, and
KEYS[1] is the domain's campaign list `cps`, so each step runs on one Cluster slot. Records
are msgpack; Lua's cmsgpack packs an empty map as an empty array, mended here once.

May import `queues.runtime` and `store`'s campaign and codec modules; never `router`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgpack

from queues.runtime import Namespace, Refusals, Runtime, ScriptSet
from store.campaigns import CampaignStore, Mark, Record, new_contact
from store.errors import CampaignExists, CampaignStopped, StoreError, UnknownCampaign

SCRIPTS = ScriptSet(
    "store",
    ("cp_create", "cp_read", "cp_state", "cp_add", "cp_dnc", "cp_claim", "cp_mark"),
    ("queues:core", "cp_lib"),
)
REFUSALS = Refusals(
    {
        "unknown_campaign": UnknownCampaign,
        "campaign_exists": CampaignExists,
        "campaign_stopped": CampaignStopped,
    },
    StoreError,
)


def _contact(raw: Any) -> Record | None:
    if not raw:
        return None
    out = dict(raw)
    out["attributes"] = dict(out.get("attributes") or {})
    out["outcomes"] = [list(o) for o in out.get("outcomes") or []]
    return out


def _campaign(raw: Any) -> Record | None:
    if not raw:
        return None
    out = dict(raw)
    out["counts"] = {k: int(v) for k, v in sorted(dict(out.get("counts") or {}).items())}
    return out


class RedisCampaigns(CampaignStore):
    """See `store.campaigns.CampaignStore`; keys in `store/lua/cp_lib.lua`."""

    def __init__(self, url: str, *, domain: str = "default") -> None:
        self._rt = Runtime(Namespace(domain), SCRIPTS, "cps", url=url)

    async def start(self) -> None:
        await self._rt.start()

    async def close(self) -> None:
        await self._rt.close()

    async def purge(self) -> None:
        """Delete every key of this domain (for tests)."""
        await self._rt.purge()

    async def _eval(self, name: str, args: Mapping[str, Any]) -> Any:
        raw = await self._rt.call(name, msgpack.packb(dict(args)))
        return REFUSALS.check(msgpack.unpackb(raw, raw=False))

    async def create(
        self, campaign: Mapping[str, Any], contacts: Sequence[Mapping[str, Any]], dnc: Sequence[str]
    ) -> Record:
        made = [new_contact(raw, set()) for raw in contacts]  # the script checks the list
        args = {"campaign": dict(campaign), "contacts": made, "dnc": list(dnc)}
        view = _campaign(await self._eval("cp_create", args))
        assert view is not None
        return view

    async def campaign(self, campaign_id: str) -> Record | None:
        return _campaign(await self._eval("cp_read", {"what": "campaign", "id": campaign_id}))

    async def campaigns(self) -> list[Record]:
        rows = await self._eval("cp_read", {"what": "campaigns"})
        return [c for c in map(_campaign, rows or []) if c is not None]

    async def set_state(self, campaign_id: str, state: str) -> Record:
        view = _campaign(await self._eval("cp_state", {"id": campaign_id, "state": state}))
        assert view is not None
        return view

    async def add_contacts(
        self, campaign_id: str, contacts: Sequence[Mapping[str, Any]]
    ) -> tuple[int, int]:
        made = [new_contact(raw, set()) for raw in contacts]
        added, duplicates = await self._eval("cp_add", {"id": campaign_id, "contacts": made})
        return int(added), int(duplicates)

    async def add_do_not_call(self, campaign_id: str, entries: Sequence[str]) -> list[Record]:
        rows = await self._eval("cp_dnc", {"id": campaign_id, "entries": list(entries)})
        return [c for c in map(_contact, rows or []) if c is not None]

    async def claim(self, campaign_id: str, now_ms: int, limit: int) -> list[Record]:
        args = {"id": campaign_id, "now": int(now_ms), "limit": int(limit)}
        rows = await self._eval("cp_claim", args)
        return [c for c in map(_contact, rows or []) if c is not None]

    async def in_line(self, campaign_id: str) -> list[Record]:
        rows = await self._eval("cp_read", {"what": "line", "id": campaign_id})
        return [c for c in map(_contact, rows or []) if c is not None]

    async def contact(self, campaign_id: str, contact_id: str) -> Record | None:
        args = {"what": "contact", "id": campaign_id, "contact": contact_id}
        return _contact(await self._eval("cp_read", args))

    async def _mark(self, step: Mark) -> bool:
        args: dict[str, Any] = {
            "id": step.campaign,
            "contact": step.contact,
            "n": int(step.n),
            "expect": list(step.expect),
            "status": step.status,
            "dialled": step.dialled,
            "now": int(step.now_ms),
        }
        for name, value in (
            ("conversation", step.conversation),
            ("disposition", step.disposition),
            ("due", step.due_ms),
        ):
            if value is not None:
                args[name] = value
        return bool(await self._eval("cp_mark", args))
