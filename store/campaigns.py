"""Campaign state: the contract of the durable call lists of outbound campaigns.

A campaign (`docs/campaigns.md`) is a record — its name, tiers, window, dispositions, retry
rules, `max_queued` and its state (`running`, `paused`, `stopped`) — with its contacts and
its do-not-call list. A contact moves through these statuses:

```
pending ─claim─▶ queued ─dial─▶ in_call ─outcome─▶ done | retrying | exhausted
retrying ─claim─▶ queued …         queued ─recall─▶ pending | retrying (paused, stopped, window)
pending, retrying, queued ─do-not-call─▶ skipped
```

Two backends keep it: `store.campaigns_memory.MemoryCampaigns` (one process) and
`store.campaigns_redis.RedisCampaigns` (Redis, shared by every node; the scripts in
`store/lua/cp_*.lua`); `tests/test_campaign_store.py` runs one suite against both. What every
backend guarantees:

* **Atomic steps.** Each method is one indivisible step (one script call on Redis), so any
  number of nodes may run the campaign loop at once: `claim` hands each due contact to one
  caller only, and gives it the next claim number `n` (the contact's task and call ids are
  made of it, so they are the same on every node and every retry). The bulk ones may be
  several steps on a backend that must not hold its store for long: `create` is still all or
  nothing to every reader (seen only once whole), `add_contacts` and `add_do_not_call` are
  steps of a few hundred each, so one that fails part-way is to be repeated (a contact already
  added counts as a duplicate, an entry already listed changes nothing).
* **Conditional, idempotent transitions.** `mark` changes a contact only while its claim
  number and status are the ones the caller saw; a repeat (a retried request, a node that took
  over) changes nothing and counts nothing twice.
* **Do-not-call always wins.** `claim` skips a contact on the list; `add_do_not_call` marks
  every contact it names that is not in a call `skipped` at once and returns those that were
  queued (the caller withdraws their tasks).
* **Counts kept with the step.** Each status and each outcome is counted in the same step
  that moves the contact, so the ops view reads counters, not 10,000 contacts.

Contacts are maps: `id`, `customer_id` and `phone` ("" for none), `attributes`, `status`,
`n` (claims so far), `dials` (calls the PBX took) and `dialled_n` (the claim last dialled),
`due_ms` (when it may be claimed; while queued, when it was claimed), `conversation` (of the
latest claim, "" until routed), `disposition` (the latest), `outcomes` ([[n, disposition,
at_ms], …]: one per call attempt).

May import `store.errors` and `queues.runtime`'s engine switch; never `router`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from queues.runtime import engine_kind
from store.errors import StoreError

STATUSES: Final = ("pending", "retrying", "queued", "in_call", "done", "skipped", "exhausted")
IN_LINE: Final = ("queued", "in_call")  # the statuses `max_queued` bounds
CLAIMABLE: Final = ("pending", "retrying")
STATES: Final = ("running", "paused", "stopped")

Record = dict[str, Any]


def new_contact(raw: Mapping[str, Any], blocked: set[str]) -> Record:
    """A contact record as `create` and `add_contacts` store it: pending and due at once, or
    skipped when the do-not-call list (`blocked`) names it."""
    contact: Record = {
        "id": str(raw["id"]),
        "customer_id": str(raw.get("customer_id") or ""),
        "phone": str(raw.get("phone") or ""),
        "attributes": dict(raw.get("attributes") or {}),
        "status": "pending",
        "n": 0,
        "dials": 0,
        "dialled_n": 0,
        "due_ms": 0,
        "conversation": "",
        "disposition": "",
        "outcomes": [],
    }
    if dnc_keys(contact) & blocked:
        contact["status"] = "skipped"
    return contact


def dnc_keys(contact: Mapping[str, Any]) -> set[str]:
    """What a do-not-call list may name a contact by: its phone, `cu:<customer id>`."""
    out = set()
    if contact.get("phone"):
        out.add(str(contact["phone"]))
    if contact.get("customer_id"):
        out.add(f"cu:{contact['customer_id']}")
    return out


def dnc_entries(phones: Sequence[str], customers: Sequence[str]) -> list[str]:
    """The list's entries for phones and customer ids (the form `dnc_keys` matches)."""
    return [*phones, *(f"cu:{c}" for c in customers)]


@dataclass(frozen=True)
class Mark:
    """One conditional move of a contact: `CampaignStore.mark`'s arguments, as its backends
    take them."""

    campaign: str
    contact: str
    n: int
    expect: tuple[str, ...]
    status: str
    conversation: str | None = None
    disposition: str | None = None
    due_ms: int | None = None
    dialled: bool = False
    now_ms: int = 0


class CampaignStore(ABC):
    """The contract; see the module docstring. Times are ms since the epoch, passed in."""

    async def start(self) -> None:  # noqa: B027 - the memory backend has nothing to start
        """Connect and register scripts. Idempotent."""

    async def close(self) -> None:  # noqa: B027
        """Release connections."""

    @abstractmethod
    async def create(
        self, campaign: Mapping[str, Any], contacts: Sequence[Mapping[str, Any]], dnc: Sequence[str]
    ) -> Record:
        """Store a new campaign (state from the record) with its contacts (`new_contact`) and
        do-not-call entries; `CampaignExists` when the id is taken. Returns `campaign(id)`."""

    @abstractmethod
    async def campaign(self, campaign_id: str) -> Record | None:
        """The campaign record with `counts` (status → n; `outcome:<disposition>` → n for
        every outcome recorded; `done:<disposition>` → n of contacts done with it) and
        `do_not_call` (entries on the list), or None."""

    @abstractmethod
    async def campaigns(self) -> list[Record]:
        """Every campaign (as `campaign`), by id."""

    @abstractmethod
    async def set_state(self, campaign_id: str, state: str) -> Record:
        """`running`, `paused` or `stopped`; `UnknownCampaign`; `CampaignStopped` once
        stopped. Returns `campaign(id)`."""

    @abstractmethod
    async def add_contacts(
        self, campaign_id: str, contacts: Sequence[Mapping[str, Any]]
    ) -> tuple[int, int]:
        """Add contacts (pending, due at once; skipped when on the do-not-call list); an id
        the campaign has already is left as it is. Returns (added, duplicates)."""

    @abstractmethod
    async def add_do_not_call(self, campaign_id: str, entries: Sequence[str]) -> list[Record]:
        """Put entries on the list; every contact they name that is pending, retrying or
        queued becomes `skipped` now. Returns the contacts it names that the list took out of
        the line, now or in an earlier call (their tasks are to be withdrawn: a list repeated
        after a failure part-way withdraws them all the same)."""

    @abstractmethod
    async def claim(self, campaign_id: str, now_ms: int, limit: int) -> list[Record]:
        """While the campaign is running: up to `limit` contacts due by `now_ms` (by due time,
        then id), no more than `max_queued` in line in all, become `queued` with `n` + 1;
        those on the do-not-call list become `skipped` instead. Returns the claimed."""

    @abstractmethod
    async def in_line(self, campaign_id: str) -> list[Record]:
        """The contacts queued or in a call, by id."""

    @abstractmethod
    async def contact(self, campaign_id: str, contact_id: str) -> Record | None:
        """One contact, or None."""

    async def mark(
        self,
        campaign_id: str,
        contact_id: str,
        n: int,
        expect: Sequence[str],
        status: str,
        *,
        conversation: str | None = None,
        disposition: str | None = None,
        due_ms: int | None = None,
        dialled: bool = False,
        now_ms: int = 0,
    ) -> bool:
        """Move the contact to `status` if its claim number is `n` and its status one of
        `expect`; else change nothing and return False. `conversation` is noted; a
        `disposition` is recorded as an outcome of claim `n`; `due_ms` (for `pending` and
        `retrying`) is when it may be claimed again; `dialled` counts a call the PBX took
        (and notes `dialled_n` = `n`)."""
        return await self._mark(
            Mark(
                campaign_id,
                contact_id,
                n,
                tuple(expect),
                status,
                conversation=conversation,
                disposition=disposition,
                due_ms=due_ms,
                dialled=dialled,
                now_ms=now_ms,
            )
        )

    @abstractmethod
    async def _mark(self, step: Mark) -> bool:
        """Make one `mark` step, atomically (the backends' one hook for it)."""


def create_campaign_store(
    url: str | None = None, *, domain: str = "default", clock: Callable[[], float] = time.time
) -> CampaignStore:
    """Memory or Redis, by the same switch as the store (`store.create_store`)."""
    kind = engine_kind(url)
    if kind == "memory":
        from store.campaigns_memory import MemoryCampaigns

        return MemoryCampaigns()
    if kind == "redis":
        from store.campaigns_redis import RedisCampaigns

        assert url is not None
        return RedisCampaigns(url, domain=domain)
    raise StoreError(f"store URL must be empty, 'memory' or redis://…, not {url!r}")
