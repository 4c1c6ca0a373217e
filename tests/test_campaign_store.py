"""Campaign state (`store.campaigns`) on both backends: claims, conditional moves, counts and
the do-not-call list, the same on memory and Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from store.campaigns import CampaignStore, new_contact
from store.campaigns_memory import MemoryCampaigns
from store.errors import CampaignExists, CampaignStopped, UnknownCampaign
from tests.conftest import KINDS


def record(cid: str = "c1", max_queued: int = 2, state: str = "running") -> dict[str, Any]:
    return {
        "id": cid,
        "name": "Win-back",
        "tiers": ["CCS", "PAM"],
        "dispositions": ["won_back", "no_answer"],
        "retry": {"on": ["no_answer"], "after_s": 60, "max_attempts": 2},
        "max_queued": max_queued,
        "state": state,
        "window": {"starts_at": "2026-01-01T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"},
    }


def contacts(n: int) -> list[dict[str, Any]]:
    return [{"id": f"k{i}", "phone": f"+4915100000{i:03d}", "attributes": {}} for i in range(n)]


@pytest.fixture(params=KINDS, ids=KINDS)
async def cps(request: pytest.FixtureRequest) -> AsyncIterator[CampaignStore]:
    made: CampaignStore
    if request.param == "memory":
        made = MemoryCampaigns()
    else:
        from store.campaigns_redis import RedisCampaigns

        made = RedisCampaigns(request.getfixturevalue("redis_url"), domain=uuid.uuid4().hex)
    await made.start()
    yield made
    purge = getattr(made, "purge", None)
    if purge is not None:
        await purge()
    await made.close()


async def test_create_read_and_refuse_a_second(cps: CampaignStore) -> None:
    view = await cps.create(record(), contacts(3), ["+4915100000001"])
    assert view["counts"] == {"pending": 2, "skipped": 1}
    assert view["do_not_call"] == 1 and view["name"] == "Win-back"
    with pytest.raises(CampaignExists):
        await cps.create(record(), contacts(1), [])
    assert [c["id"] for c in await cps.campaigns()] == ["c1"]
    assert await cps.campaign("nope") is None
    contact = await cps.contact("c1", "k0")
    assert contact is not None and contact["attributes"] == {} and contact["status"] == "pending"


async def test_claim_is_bounded_by_max_queued_and_once_each(cps: CampaignStore) -> None:
    await cps.create(record(max_queued=3), contacts(10), [])
    got = await asyncio.gather(*(cps.claim("c1", 1000, 10) for _ in range(4)))
    claimed = [c["id"] for batch in got for c in batch]
    assert len(claimed) == 3 and len(set(claimed)) == 3
    assert all(c["n"] == 1 and c["status"] == "queued" for batch in got for c in batch)
    assert [c["id"] for c in await cps.in_line("c1")] == sorted(claimed)
    view = await cps.campaign("c1")
    assert view is not None and view["counts"] == {"pending": 7, "queued": 3}


async def test_mark_is_conditional_and_counts_once(cps: CampaignStore) -> None:
    await cps.create(record(), contacts(1), [])
    [_claimed] = await cps.claim("c1", 1000, 5)
    assert await cps.mark("c1", "k0", 1, ["queued"], "queued", conversation="cv-1")
    assert await cps.mark("c1", "k0", 1, ["queued"], "in_call", dialled=True)
    assert not await cps.mark("c1", "k0", 1, ["queued"], "in_call", dialled=True)
    due = 1000 + 60_000
    args: dict[str, Any] = {"disposition": "no_answer", "due_ms": due, "now_ms": 2000}
    assert await cps.mark("c1", "k0", 1, ["in_call"], "retrying", **args)
    assert not await cps.mark("c1", "k0", 1, ["in_call"], "retrying", **args)  # a repeat
    assert await cps.claim("c1", due - 1, 5) == []  # not due yet
    [again] = await cps.claim("c1", due, 5)
    assert (again["n"], again["dials"], again["conversation"]) == (2, 1, "")
    assert await cps.mark("c1", "k0", 2, ["queued"], "done", disposition="won_back")
    view = await cps.campaign("c1")
    assert view is not None
    assert view["counts"] == {
        "done": 1,
        "done:won_back": 1,
        "outcome:no_answer": 1,
        "outcome:won_back": 1,
    }
    final = await cps.contact("c1", "k0")
    assert final is not None and [o[:2] for o in final["outcomes"]] == [
        [1, "no_answer"],
        [2, "won_back"],
    ]


async def test_do_not_call_wins_and_returns_the_queued(cps: CampaignStore) -> None:
    await cps.create(record(max_queued=1), contacts(3), [])
    [first] = await cps.claim("c1", 1000, 5)
    hit = await cps.add_do_not_call("c1", [first["phone"], "+4915100000002"])
    assert [c["id"] for c in hit] == [first["id"]]
    claimed = await cps.claim("c1", 1000, 5)
    assert [c["id"] for c in claimed] == ["k1"]
    view = await cps.campaign("c1")
    assert view is not None and view["counts"] == {"queued": 1, "skipped": 2}
    # by customer id too, and at claim time for a contact added later
    await cps.add_do_not_call("c1", ["cu:x9"])
    assert await cps.add_contacts("c1", [{"id": "k9", "customer_id": "x9"}, {"id": "k1"}]) == (1, 1)
    k9 = await cps.contact("c1", "k9")
    assert k9 is not None and k9["status"] == "skipped"


async def test_do_not_call_wins_over_an_accepted_contact_not_dialled_yet(
    cps: CampaignStore,
) -> None:
    """Accepted, its dial job still waiting (a PBX down, a dead node's job not taken over
    yet): a number put on the list now is skipped, so the dial step finds nothing to send.
    Once dialled for its claim, the call is under way and the list waits for the next one."""
    await cps.create(record(max_queued=2), contacts(2), [])
    for contact in await cps.claim("c1", 1000, 5):
        assert await cps.mark("c1", contact["id"], 1, ["queued"], "in_call")
    assert await cps.mark("c1", "k1", 1, ["in_call"], "in_call", dialled=True)
    assert await cps.add_do_not_call("c1", ["+4915100000000", "+4915100000001"]) == []
    k0, k1 = await cps.contact("c1", "k0"), await cps.contact("c1", "k1")
    assert k0 is not None and k0["status"] == "skipped"
    assert k1 is not None and k1["status"] == "in_call"
    view = await cps.campaign("c1")
    assert view is not None and view["counts"] == {"in_call": 1, "skipped": 1}


async def test_states_pause_claims_and_stop_is_final(cps: CampaignStore) -> None:
    await cps.create(record(), contacts(2), [])
    assert (await cps.set_state("c1", "paused"))["state"] == "paused"
    assert await cps.claim("c1", 1000, 5) == []
    await cps.set_state("c1", "running")
    assert len(await cps.claim("c1", 1000, 5)) == 2
    await cps.set_state("c1", "stopped")
    with pytest.raises(CampaignStopped):
        await cps.set_state("c1", "running")
    with pytest.raises(CampaignStopped):
        await cps.add_contacts("c1", contacts(1))
    with pytest.raises(UnknownCampaign):
        await cps.set_state("nope", "paused")


# -- large lists: stored in short steps on Redis (store.campaigns_redis.CHUNK) -----------------


def many(n: int, prefix: str = "m") -> list[dict[str, Any]]:
    """`n` contacts, every fifth named by a customer id besides its phone."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        contact: dict[str, Any] = {"id": f"{prefix}{i}", "phone": f"+49152{i:08d}"}
        contact["attributes"] = {"i": i}
        if i % 5 == 0:
            contact["customer_id"] = f"cust-{i}"
        out.append(contact)
    return out


async def test_a_create_larger_than_a_step_is_whole_with_its_list(cps: CampaignStore) -> None:
    """1,234 contacts and 1,100 entries, more than one step each: every contact is checked
    against the whole list, and the campaign is listed once, as created."""
    blocked = [f"+49152{i:08d}" for i in range(0, 1234, 7)]  # 177 of the contacts' phones
    entries = [*(f"+49153{i:08d}" for i in range(900)), *blocked, "cu:cust-5", "cu:nobody"]
    view = await cps.create(record("big", state="paused"), many(1234), entries)
    skipped = len(blocked) + 1  # cust-5's contact (m5) is not among the phones: 5 % 7 != 0
    assert view["counts"] == {"pending": 1234 - skipped, "skipped": skipped}
    assert view["do_not_call"] == len(entries) and view["state"] == "paused"
    assert [c["id"] for c in await cps.campaigns()] == ["big"]
    for cid, status in (("m0", "skipped"), ("m5", "skipped"), ("m1", "pending")):
        contact = await cps.contact("big", cid)
        assert contact is not None and contact["status"] == status
    last = await cps.contact("big", "m1233")
    assert last is not None and last["attributes"] == {"i": 1233}


async def test_do_not_call_finds_its_contacts_in_a_large_campaign(cps: CampaignStore) -> None:
    """Entries by phone and by customer id, more than one step of them, against 1,500
    contacts: exactly the contacts named are skipped, the queued ones returned."""
    await cps.create(record("big", max_queued=3), many(1500), [])
    queued = await cps.claim("big", 1000, 3)
    assert [c["id"] for c in queued] == ["m0", "m1", "m10"]  # due together: by id
    entries = [
        *(f"+49154{i:08d}" for i in range(600)),
        "+4915200000001",
        "cu:cust-10",
        "cu:cust-1495",
        "+4915200001499",
    ]
    withdrawn = await cps.add_do_not_call("big", entries)
    assert [c["id"] for c in withdrawn] == ["m1", "m10"]
    view = await cps.campaign("big")
    assert view is not None and view["counts"] == {"pending": 1495, "queued": 1, "skipped": 4}
    assert view["do_not_call"] == len(entries)
    for cid in ("m1", "m10", "m1495", "m1499"):
        contact = await cps.contact("big", cid)
        assert contact is not None and contact["status"] == "skipped"


async def test_adding_no_contacts_still_checks_the_campaign(cps: CampaignStore) -> None:
    with pytest.raises(UnknownCampaign):
        await cps.add_contacts("nope", [])
    await cps.create(record(), contacts(1), [])
    await cps.set_state("c1", "stopped")
    with pytest.raises(CampaignStopped):
        await cps.add_contacts("c1", [])


async def test_do_not_call_finds_every_contact_sharing_a_phone(cps: CampaignStore) -> None:
    """Many contacts of one number (a switchboard) or one customer, added in several steps:
    one entry skips them all."""
    shared = "+4915700000001"
    await cps.create(
        record(max_queued=10), [{"id": f"a{i}", "phone": shared} for i in range(3)], []
    )
    assert await cps.add_contacts("c1", [{"id": f"b{i}", "phone": shared} for i in range(600)]) == (
        600,
        0,
    )
    both = [
        {"id": "x0", "customer_id": "cust-x"},
        {"id": "x1", "customer_id": "cust-x", "phone": shared},
    ]
    await cps.add_contacts("c1", both)
    await cps.add_do_not_call("c1", [shared])
    view = await cps.campaign("c1")
    assert view is not None and view["counts"] == {"pending": 1, "skipped": 604}
    await cps.add_do_not_call("c1", ["cu:cust-x"])
    view = await cps.campaign("c1")
    assert view is not None and view["counts"] == {"skipped": 605}


async def test_a_contact_taken_out_of_the_line_is_returned_by_a_repeat(
    cps: CampaignStore,
) -> None:
    await cps.create(record(max_queued=1), contacts(3), [])
    [queued] = await cps.claim("c1", 1000, 1)
    entries = [queued["phone"], "+4915100000002"]
    assert [c["id"] for c in await cps.add_do_not_call("c1", entries)] == [queued["id"]]
    again = await cps.add_do_not_call("c1", entries)  # its task is withdrawn again: harmless
    assert [(c["id"], c["conversation"], c["n"]) for c in again] == [
        (queued["id"], queued["conversation"], 1)
    ]


@pytest.fixture
async def redis_cps(redis_url: str) -> AsyncIterator[Any]:
    from store.campaigns_redis import RedisCampaigns

    made = RedisCampaigns(redis_url, domain=uuid.uuid4().hex)
    await made.start()
    yield made
    await made.purge()
    await made.close()


async def test_a_create_whose_node_died_midway_is_unseen_then_replaced(redis_cps: Any) -> None:
    """The first steps of a large create, and no last one (its node died): nobody sees the
    campaign; a create of the same id replaces it, and the dead load's next step is refused."""
    cps = redis_cps
    first = {"campaign": record("big"), "contacts": [], "dnc": [], "load": "dead"}
    await cps._eval("cp_create", first)
    await cps._eval(
        "cp_load",
        {
            "id": "big",
            "load": "dead",
            "done": False,
            "contacts": [new_contact(c, set()) for c in many(3)],
        },
    )
    assert await cps.campaign("big") is None and await cps.campaigns() == []
    assert await cps.contact("big", "m0") is None  # its contacts are unseen with it
    rt = cps._rt
    assert 0 < await rt.client.pttl(rt.namespace.key("cpc", "big")) <= 3_600_000  # then gone
    for step in (
        cps.claim("big", 1000, 5),
        cps.add_contacts("big", many(1, "n")),
        cps.add_do_not_call("big", ["+4915200000000"]),
        cps.set_state("big", "paused"),
    ):
        with pytest.raises(UnknownCampaign):
            await step
    view = await cps.create(record("big"), many(2, "n"), [])
    assert view["counts"] == {"pending": 2}
    assert await cps.contact("big", "m0") is None  # the dead load's contacts went with it
    assert await rt.client.pttl(rt.namespace.key("cpc", "big")) == -1  # a whole one stays
    with pytest.raises(CampaignExists):
        await cps._eval("cp_load", {"id": "big", "load": "dead", "done": True, "contacts": []})
    with pytest.raises(CampaignExists):
        await cps.create(record("big"), many(600, "p"), [])  # a whole campaign is not replaced
    view = await cps.campaign("big")
    assert view is not None and view["counts"] == {"pending": 2}


async def test_a_large_create_keeps_its_keys_once_whole(redis_cps: Any) -> None:
    cps = redis_cps
    await cps.create(record("big"), many(1200), [])
    rt = cps._rt
    for name in ("cp", "cpc", "cpdue", "cpby"):
        assert await rt.client.pttl(rt.namespace.key(name, "big")) == -1, name


async def test_a_do_not_call_list_repeated_after_a_failure_still_withdraws(
    redis_cps: Any,
) -> None:
    """A list of more than one step fails after the first (Redis went away, the node died):
    the client repeats it, and the contact the first step took out of the line is returned
    again, so that its task is withdrawn."""
    cps = redis_cps
    await cps.create(record("c1", max_queued=1), many(3), [])
    [queued] = await cps.claim("c1", 1000, 1)
    entries = [queued["phone"], *(f"+49155{i:08d}" for i in range(700))]
    real, steps = cps._eval, []

    async def failing_second_step(name: str, args: Any) -> Any:
        steps.append(name)
        if steps.count("cp_dnc") == 2:
            raise ConnectionError("Redis went away")
        return await real(name, args)

    cps._eval = failing_second_step
    with pytest.raises(ConnectionError):
        await cps.add_do_not_call("c1", entries)
    cps._eval = real
    assert [c["id"] for c in await cps.add_do_not_call("c1", entries)] == [queued["id"]]


async def test_a_campaign_from_before_the_index_is_read_whole(redis_cps: Any) -> None:
    """A campaign stored before contacts were indexed by phone and customer (its record has no
    `by` mark, its contacts no index): a do-not-call entry still finds them."""
    import msgpack

    cps = redis_cps
    await cps.create(record("old", max_queued=1), many(4), [])
    rt = cps._rt
    key = rt.namespace.key("cp", "old")
    redis = rt.client
    stored = msgpack.unpackb(await redis.get(key), raw=False)
    stored.pop("by")
    await redis.set(key, msgpack.packb(stored))
    await redis.delete(rt.namespace.key("cpby", "old"))
    [queued] = await cps.claim("old", 1000, 1)
    withdrawn = await cps.add_do_not_call("old", [queued["phone"], "cu:cust-0", "+4915200000003"])
    assert [c["id"] for c in withdrawn] == [queued["id"]]
    view = await cps.campaign("old")
    assert view is not None and view["counts"] == {"pending": 2, "skipped": 2}
