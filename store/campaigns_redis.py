"""Campaign state on Redis, shared by every node. See `store.campaigns` for the contract and
`store.campaigns_memory` for the same decisions in Python.

One script per step (`store/lua/cp_*.lua`, after `queues/lua/core.lua` and
`store/lua/cp_lib.lua`, which lists the keys): every key is under the domain's hash tag, and
KEYS[1] is the domain's campaign list `cps`, so each step runs on one Cluster slot. Records
are msgpack; Lua's cmsgpack packs an empty map as an empty array, mended here once.

No step holds Redis for long: a create with more than `CHUNK` contacts or entries is stored
in steps of `CHUNK` (`cp_create` with a load token, then `cp_load`), unseen until its last
step, and a create of the same id replaces one that never ended; contacts are added and
do-not-call entries applied `CHUNK` at a time. 100,000 contacts in one script held Redis (and
every routing call of the domain) for 1.3 s at a stretch.

May import `queues.runtime` and `store`'s campaign and codec modules; never `router`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgpack

from queues.runtime import Namespace, Refusals, Runtime, ScriptSet
from store.campaigns import CampaignStore, Mark, Record, new_contact
from store.errors import CampaignExists, CampaignStopped, StoreError, UnknownCampaign

SCRIPTS = ScriptSet(
    "store",
    ("cp_create", "cp_load", "cp_read", "cp_state", "cp_add", "cp_dnc", "cp_claim", "cp_mark"),
    ("queues:core", "cp_lib"),
)
CHUNK: Final = 500  # contacts or entries one script stores: some 10 ms of Redis
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
        if len(made) <= CHUNK and len(dnc) <= CHUNK:
            args = {"campaign": dict(campaign), "contacts": made, "dnc": list(dnc)}
            view = _campaign(await self._eval("cp_create", args))
        else:
            view = await self._load(dict(campaign), made, list(dnc))
        assert view is not None
        return view

    async def _load(
        self, campaign: dict[str, Any], made: list[Record], dnc: list[str]
    ) -> Record | None:
        """A create in steps (see the module docstring): the entries first, so that every
        contact is checked against the whole list as it is added."""
        token = uuid.uuid4().hex
        await self._eval(
            "cp_create", {"campaign": campaign, "contacts": [], "dnc": [], "load": token}
        )
        steps = [{"dnc": part} for part in _chunks(dnc)] + [{"contacts": p} for p in _chunks(made)]
        last: Any = None
        for i, step in enumerate(steps):
            done = i == len(steps) - 1
            last = await self._eval("cp_load", {"id": campaign["id"], "load": token, "done": done,
                                                **step})  # fmt: skip
        return _campaign(last)

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
        added = duplicates = 0
        for part in _chunks(made) or [[]]:  # none: still one step, which checks the campaign
            step = await self._eval("cp_add", {"id": campaign_id, "contacts": part})
            added, duplicates = added + int(step[0]), duplicates + int(step[1])
        return added, duplicates

    async def add_do_not_call(self, campaign_id: str, entries: Sequence[str]) -> list[Record]:
        rows: list[Any] = []
        for part in _chunks(list(entries)) or [[]]:
            rows.extend(await self._eval("cp_dnc", {"id": campaign_id, "entries": part}) or [])
        return sorted((c for c in map(_contact, rows) if c is not None), key=lambda c: c["id"])

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


def _chunks(items: list[Any]) -> list[list[Any]]:
    """`items` in runs of `CHUNK`, one script step each."""
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]
