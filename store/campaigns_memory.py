"""Campaign state in one process: dicts, for the memory engine. See `store.campaigns`.

The reference for `store.campaigns_redis`, whose scripts make the same decisions: contacts in
a dict by id, the due ones in a sorted list by (due, id) as the Redis sorted set orders them,
counters kept with every move. Every method runs without awaiting, so each is atomic on one
event loop.

May import `store.campaigns` and `store.errors`; never `router`.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sortedcontainers import SortedList

from store.campaigns import CLAIMABLE, IN_LINE, CampaignStore, Mark, Record, dnc_keys, new_contact
from store.errors import CampaignExists, CampaignStopped, UnknownCampaign


@dataclass
class _Campaign:
    record: Record
    contacts: dict[str, Record] = field(default_factory=dict)
    due: SortedList = field(default_factory=SortedList)  # (due_ms, contact id)
    line: set[str] = field(default_factory=set)
    dnc: set[str] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)

    def move(self, contact: Record, status: str) -> None:
        """The one place a contact's status changes: counters, due list and line with it."""
        old = contact["status"]
        if old:
            self.counts[old] -= 1
        if old in CLAIMABLE:
            self.due.discard((contact["due_ms"], contact["id"]))
        self.line.discard(contact["id"])
        contact["status"] = status
        self.counts[status] += 1
        if status in CLAIMABLE:
            self.due.add((contact["due_ms"], contact["id"]))
        elif status in IN_LINE:
            self.line.add(contact["id"])

    def add(self, raw: Mapping[str, Any]) -> bool:
        if str(raw["id"]) in self.contacts:
            return False
        contact = new_contact(raw, self.dnc)
        status, contact["status"] = contact["status"], ""
        self.contacts[contact["id"]] = contact
        self.move(contact, status)
        return True

    def view(self) -> Record:
        out = copy.deepcopy(self.record)
        out["counts"] = {k: v for k, v in sorted(self.counts.items()) if v}
        out["do_not_call"] = len(self.dnc)
        return out


class MemoryCampaigns(CampaignStore):
    """See `store.campaigns.CampaignStore`."""

    def __init__(self) -> None:
        self._campaigns: dict[str, _Campaign] = {}

    def _get(self, campaign_id: str) -> _Campaign:
        found = self._campaigns.get(campaign_id)
        if found is None:
            raise UnknownCampaign(f"campaign {campaign_id} is not known")
        return found

    async def create(
        self, campaign: Mapping[str, Any], contacts: Sequence[Mapping[str, Any]], dnc: Sequence[str]
    ) -> Record:
        cid = str(campaign["id"])
        if cid in self._campaigns:
            raise CampaignExists(f"campaign {cid} exists")
        made = _Campaign(copy.deepcopy(dict(campaign)), dnc=set(dnc))
        for raw in contacts:
            made.add(raw)
        self._campaigns[cid] = made
        return made.view()

    async def campaign(self, campaign_id: str) -> Record | None:
        found = self._campaigns.get(campaign_id)
        return found.view() if found is not None else None

    async def campaigns(self) -> list[Record]:
        return [c.view() for _, c in sorted(self._campaigns.items())]

    async def set_state(self, campaign_id: str, state: str) -> Record:
        found = self._get(campaign_id)
        if found.record["state"] == "stopped" and state != "stopped":
            raise CampaignStopped(f"campaign {campaign_id} is stopped")
        found.record["state"] = state
        return found.view()

    async def add_contacts(
        self, campaign_id: str, contacts: Sequence[Mapping[str, Any]]
    ) -> tuple[int, int]:
        found = self._get(campaign_id)
        if found.record["state"] == "stopped":
            raise CampaignStopped(f"campaign {campaign_id} is stopped")
        added = sum(found.add(raw) for raw in contacts)
        return added, len(contacts) - added

    async def add_do_not_call(self, campaign_id: str, entries: Sequence[str]) -> list[Record]:
        found = self._get(campaign_id)
        found.dnc.update(entries)
        named = set(entries)
        withdrawn: list[Record] = []
        for contact_id in sorted(found.contacts):
            contact = found.contacts[contact_id]
            if not dnc_keys(contact) & named:
                continue
            if _undialled(contact):
                if contact["status"] == "queued":
                    contact["pulled"] = True  # taken out of the line: returned by a repeat too
                    withdrawn.append(copy.deepcopy(contact))
                found.move(contact, "skipped")
            elif contact.get("pulled"):
                withdrawn.append(copy.deepcopy(contact))
        return withdrawn

    async def claim(self, campaign_id: str, now_ms: int, limit: int) -> list[Record]:
        found = self._get(campaign_id)
        if found.record["state"] != "running":
            return []
        room = min(limit, int(found.record["max_queued"]) - len(found.line))
        claimed: list[Record] = []
        while room > 0 and found.due and found.due[0][0] <= now_ms:
            contact = found.contacts[found.due[0][1]]
            if dnc_keys(contact) & found.dnc:
                found.move(contact, "skipped")
                continue
            found.move(contact, "queued")
            contact["n"] += 1
            contact["conversation"] = ""
            contact["due_ms"] = now_ms  # while queued: when it was claimed (recovery reads it)
            claimed.append(copy.deepcopy(contact))
            room -= 1
        return claimed

    async def in_line(self, campaign_id: str) -> list[Record]:
        found = self._get(campaign_id)
        return [copy.deepcopy(found.contacts[c]) for c in sorted(found.line)]

    async def contact(self, campaign_id: str, contact_id: str) -> Record | None:
        found = self._campaigns.get(campaign_id)
        contact = found.contacts.get(contact_id) if found is not None else None
        return copy.deepcopy(contact) if contact is not None else None

    async def _mark(self, step: Mark) -> bool:
        found = self._campaigns.get(step.campaign)
        contact = found.contacts.get(step.contact) if found is not None else None
        if found is None or contact is None:
            return False
        if contact["n"] != step.n or contact["status"] not in step.expect:
            return False
        if step.conversation is not None:
            contact["conversation"] = step.conversation
        if step.dialled:
            contact["dials"] += 1
            contact["dialled_n"] = step.n
        if step.disposition is not None:
            contact["disposition"] = step.disposition
            contact["outcomes"].append([step.n, step.disposition, step.now_ms])
            found.counts[f"outcome:{step.disposition}"] += 1
            if step.status == "done":
                found.counts[f"done:{step.disposition}"] += 1
        if step.status != contact["status"]:
            if contact["status"] in CLAIMABLE:
                found.due.discard((contact["due_ms"], contact["id"]))
            if step.due_ms is not None:
                contact["due_ms"] = step.due_ms
            found.move(contact, step.status)
        return True


def _undialled(contact: Record) -> bool:
    """Not called yet for its claim: due, in line, or accepted with its dial still to go."""
    status = contact["status"]
    if status == "in_call":
        return int(contact.get("dialled_n") or 0) != int(contact["n"])
    return status in (*CLAIMABLE, "queued")
