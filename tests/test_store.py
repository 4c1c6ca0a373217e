"""The storage contract (`store.base`) on both backends: one suite, memory and Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from store import create_store
from store.base import Store
from store.errors import StaleVersion, StoreError, UnknownCustomer
from store.memory import MemoryStore
from store.model import Frames, InboundEvent, LogEntry, Reply
from store.redis import RedisStore
from tests.conftest import StoreFactory
from tests.support import FakeClock

NOW = 1_800_000_000_000
WAIT_S = 5.0


def ev(event_id: str, sender: str = "anna@example.org", **fields: Any) -> InboundEvent:
    fields.setdefault("channel", "chat")
    fields.setdefault("type", "message")
    fields.setdefault("body", f"body of {event_id}")
    return InboundEvent(id=event_id, sender=sender, **fields)


async def drain(store: Store, consumer: str = "c1") -> list[LogEntry]:
    entries = await store.read_log(consumer, 1000, 0)
    await store.ack_log([e.entry_id for e in entries])
    return entries


async def ingest_apply(store: Store, *events: InboundEvent, now: int = NOW) -> list[LogEntry]:
    """Ingest and apply, as the server's consumer would."""
    await store.ingest(list(events), now)
    entries = await drain(store)
    for entry in entries:
        await store.apply_inbound(entry, now)
    return entries


# -- ingest: dedupe, atomicity, identity, conversations ---------------------------------------


async def test_a_new_event_makes_a_customer_and_an_open_conversation(store: Store) -> None:
    [row] = await store.ingest([ev("e1")], NOW)
    assert not row.duplicate and row.event == "e1"
    cust = await store.customer(row.customer)
    conv = await store.conversation(row.conversation)
    assert cust is not None and conv is not None
    assert cust.version == 1 and cust.client_group == "normal"
    assert cust.addresses == ("anna@example.org",)
    assert cust.open_conversation == row.conversation
    assert (conv.customer, conv.state, conv.agent) == (row.customer, "queued", None)
    assert conv.channels == ("chat",) and conv.last_channel == "chat"
    assert await store.conversation("cv-none") is None and await store.customer("x") is None


async def test_a_repeated_event_id_is_a_duplicate_and_appended_once(store: Store) -> None:
    first = await store.ingest([ev("e1"), ev("e1")], NOW)
    again = await store.ingest([ev("e1", body="changed")], NOW + 1000)
    assert [r.duplicate for r in first + again] == [False, True, True]
    assert {r.conversation for r in first + again} == {first[0].conversation}
    entries = await drain(store)
    assert [e.event.id for e in entries] == ["e1"]
    assert entries[0].event.body == "body of e1"


async def test_an_event_id_is_new_again_after_dedupe_s(make_store: StoreFactory) -> None:
    store = await make_store(dedupe_s=60)
    await store.ingest([ev("e1")], NOW)
    [row] = await store.ingest([ev("e1")], NOW + 30_000)
    assert row.duplicate
    if type(store) is MemoryStore:  # Redis expires keys on its own clock: not testable fast
        [row] = await store.ingest([ev("e1")], NOW + 61_000)
        assert not row.duplicate


async def test_a_batch_is_all_or_nothing(store: Store) -> None:
    with pytest.raises(StoreError):
        await store.ingest([ev("ok"), ev("bad", channel="fax")], NOW)
    with pytest.raises(StoreError):
        await store.ingest([ev("ok"), ev("bad2", profile={"client_group": "VIP"})], NOW)
    assert await store.read_log("c1", 10, 0) == []
    rows = await store.ingest([ev("ok"), ev("b", "bob@example.org"), ev("c", "+4915112")], NOW)
    assert not any(r.duplicate for r in rows)
    entries = await drain(store)
    assert [e.event.id for e in entries] == ["ok", "b", "c"]
    assert [e.conversation for e in entries] == [r.conversation for r in rows]
    assert entries[2].event == ev("c", "+4915112")


async def test_one_open_conversation_per_customer_across_channels(store: Store) -> None:
    rows = await store.ingest(
        [
            ev("e1", "+4915112345678", channel="sms"),
            ev("e2", "+4915112345678", channel="voice", type="call.offered"),
            ev("e3", "visitor:7f3a", channel="chat"),
        ],
        NOW,
    )
    assert rows[0].conversation == rows[1].conversation != rows[2].conversation
    assert rows[0].customer != rows[2].customer
    # the site vouches that the visitor is the customer with that phone number
    [linked] = await store.ingest([ev("e4", "visitor:7f3a", customer_id=rows[0].customer)], NOW)
    assert (linked.customer, linked.conversation) == (rows[0].customer, rows[0].conversation)
    for entry in await drain(store):
        await store.apply_inbound(entry, NOW)
    conv = await store.conversation(rows[0].conversation)
    assert conv is not None
    assert set(conv.channels) == {"sms", "voice", "chat"} and conv.last_channel == "chat"


async def test_a_customer_id_links_and_moves_addresses(store: Store) -> None:
    [anon] = await store.ingest([ev("e1", "anna@example.org")], NOW)
    [site] = await store.ingest([ev("e2", "+4915112", customer_id="site-42", site="S1")], NOW)
    assert site.customer == "site-42" != anon.customer
    [moved] = await store.ingest([ev("e3", "anna@example.org", customer_id="site-42")], NOW)
    [later] = await store.ingest([ev("e4", "anna@example.org")], NOW)
    assert moved.customer == later.customer == "site-42"
    assert later.conversation == site.conversation
    old, new = await store.customer(anon.customer), await store.customer("site-42")
    assert old is not None and new is not None
    assert old.addresses == ()
    assert set(new.addresses) == {"+4915112", "anna@example.org"}
    assert new.site == "S1"


async def test_close_opens_a_new_conversation_keeping_history_and_last_agent(
    store: Store,
) -> None:
    [e1] = await ingest_apply(store, ev("e1"))
    await store.set_state(e1.conversation, "offered", "ag-1")
    await store.set_state(e1.conversation, "assigned", "ag-1")
    await store.add_outbound(Reply(e1.conversation, "chat", "hello", "ag-1", NOW + 1))
    await store.set_state(e1.conversation, "closed", "ag-1")
    closed = await store.conversation(e1.conversation)
    cust = await store.customer(e1.customer)
    assert closed is not None and closed.state == "closed"
    assert cust is not None and cust.open_conversation is None
    with pytest.raises(StoreError):
        await store.set_state(e1.conversation, "queued", None)
    await store.set_state(e1.conversation, "closed", None)  # closing again changes nothing

    [e2] = await ingest_apply(store, ev("e2", channel="sms"), now=NOW + 2)
    assert e2.customer == e1.customer and e2.conversation != e1.conversation
    conv = await store.conversation(e2.conversation)
    assert conv is not None and conv.last_agent == "ag-1" and conv.state == "queued"
    history = await store.history(e1.customer, 10)
    assert [(i.conversation, i.direction) for i in history] == [
        (e1.conversation, "in"),
        (e1.conversation, "out"),
        (e2.conversation, "in"),
    ]
    # an abandoned conversation (never assigned) keeps the earlier last agent
    await store.set_state(e2.conversation, "closed", None)
    [e3] = await ingest_apply(store, ev("e3"), now=NOW + 3)
    conv = await store.conversation(e3.conversation)
    assert conv is not None and conv.last_agent == "ag-1"


async def test_an_entry_applied_after_close_goes_to_the_open_conversation(store: Store) -> None:
    [row] = await store.ingest([ev("e1")], NOW)
    await store.set_state(row.conversation, "closed", None)
    [entry] = await drain(store)
    conv, cust, ix = await store.apply_inbound(entry, NOW)
    assert conv.id != row.conversation and conv.state == "queued"
    assert cust.open_conversation == conv.id
    assert ix is not None and ix.conversation == conv.id
    [dup] = await store.ingest([ev("e1")], NOW)
    assert dup.duplicate and dup.conversation == conv.id


# -- email ----------------------------------------------------------------------------------


def mail(event_id: str, sender: str = "anna@example.org", **fields: Any) -> InboundEvent:
    return ev(event_id, sender, channel="email", subject="Help", **fields)


async def test_one_email_to_two_support_addresses_is_one_conversation(store: Store) -> None:
    rows = await store.ingest(
        [
            mail("smtp-1", message_id="<m1@example.org>", meta={"to": "support@a.example"}),
            mail("smtp-2", message_id="<m1@example.org>", meta={"to": "help@b.example"}),
        ],
        NOW,
    )
    [late] = await store.ingest([mail("smtp-3", message_id="<m1@example.org>")], NOW + 5)
    assert [r.duplicate for r in [*rows, late]] == [False, True, True]
    assert {r.conversation for r in [*rows, late]} == {rows[0].conversation}
    assert [e.event.id for e in await drain(store)] == ["smtp-1"]


async def test_replies_thread_by_in_reply_to_and_references(store: Store) -> None:
    [first] = await store.ingest([mail("m1", message_id="<m1@x>")], NOW)
    [other] = await store.ingest([ev("c1", "bob@example.org")], NOW)
    # a colleague answers from another address: the thread, not the sender, decides
    [reply] = await store.ingest(
        [mail("m2", "anna.work@example.org", message_id="<m2@x>", in_reply_to="<m1@x>")], NOW
    )
    [refs] = await store.ingest(
        [mail("m3", "bob@example.org", message_id="<m3@x>", references=("<nope@x>", "<m2@x>"))],
        NOW,
    )
    assert reply.conversation == refs.conversation == first.conversation
    assert reply.customer == refs.customer == first.customer
    assert other.conversation != first.conversation
    # the thread's conversation closed: a reply goes to the customer's new conversation
    await store.set_state(first.conversation, "closed", "ag-1")
    [late] = await store.ingest([mail("m4", "x@example.org", in_reply_to="<m3@x>")], NOW)
    assert late.customer == first.customer and late.conversation != first.conversation
    conv = await store.conversation(late.conversation)
    assert conv is not None and conv.last_agent == "ag-1"


# -- history, profile, counters, versions ---------------------------------------------------


async def test_history_is_oldest_first_and_limited(store: Store) -> None:
    entries = await ingest_apply(store, *(ev(f"e{n}") for n in range(5)))
    out = await store.add_outbound(Reply(entries[0].conversation, "chat", "reply", "ag-1", NOW + 9))
    history = await store.history(entries[0].customer, 3)
    assert [i.body for i in history] == ["body of e3", "body of e4", "reply"]
    assert history[-1] == out and out.direction == "out"
    assert len({i.id for i in await store.history(entries[0].customer, 100)}) == 6
    assert await store.history(entries[0].customer, 0) == []
    assert await store.history("nobody", 5) == []


async def test_profile_fields_merge_and_counters_count(store: Store) -> None:
    entries = await ingest_apply(
        store,
        ev("e1", profile={"coins": 40, "city": "Köln", "password": "x", "top_up": True}),
        ev("e2", profile={"coins": 55, "city": None, "client_group": "SIC"}),
        ev("e3", type="call.offered", channel="voice"),
    )
    conv_id = entries[0].conversation
    await store.add_outbound(Reply(conv_id, "chat", "hi", "ag-1", NOW))
    await store.add_outbound(Reply(conv_id, "sms", "hi again", "ag-1", NOW))
    cust = await store.customer(entries[0].customer)
    assert cust is not None
    assert dict(cust.profile) == {"coins": 55, "city": "Köln", "top_up": True}
    assert cust.client_group == "SIC" and cust.version == 2
    assert (cust.messages_in, cust.messages_out) == (2, 2)


async def test_customer_edits_are_versioned(store: Store) -> None:
    [row] = await store.ingest([ev("e1")], NOW)
    updated = await store.update_customer(row.customer, 1, {"vcard": "likes tea", "job": "chef"})
    assert updated.version == 2 and updated.editable == {"vcard": "likes tea", "job": "chef"}
    with pytest.raises(StaleVersion) as stale:
        await store.update_customer(row.customer, 1, {"vcard": "likes coffee"})
    assert stale.value.current.version == 2
    assert stale.value.current.editable["vcard"] == "likes tea"
    with pytest.raises(StoreError):
        await store.update_customer(row.customer, 2, {"client_group": "normal"})
    with pytest.raises(StoreError):  # each field within its bound (store.model.EDITABLE_FIELDS)
        await store.update_customer(row.customer, 2, {"job": "x" * 201})
    with pytest.raises(UnknownCustomer):
        await store.update_customer("nobody", 1, {"vcard": "x"})
    again = await store.update_customer(row.customer, 2, {"vcard": "likes coffee"})
    assert again.version == 3 and again.editable["job"] == "chef"


async def test_set_group_bumps_the_version(store: Store) -> None:
    [row] = await store.ingest([ev("e1")], NOW)
    cust = await store.set_group(row.customer, "CSC")
    assert (cust.client_group, cust.version) == ("CSC", 2)
    with pytest.raises(StaleVersion):
        await store.update_customer(row.customer, 1, {"vcard": "x"})
    with pytest.raises(StoreError):
        await store.set_group(row.customer, "VIP")
    with pytest.raises(UnknownCustomer):
        await store.set_group("nobody", "SIC")


# -- outboxes and wakes ---------------------------------------------------------------------


async def test_outbox_seqs_increase_per_agent(store: Store) -> None:
    assert await store.head("a") == 0
    seqs = await store.push([("a", {"type": "x"}), ("b", {"type": "y"}), ("a", {"type": "z"})])
    assert seqs == [1, 1, 2]
    assert await store.push([("a", {"type": "w", "n": [1, 2]})]) == [3]
    assert (await store.head("a"), await store.head("b")) == (3, 1)
    frames, recovered = await store.since("a", 1)
    assert recovered
    assert frames == [(2, {"type": "z", "seq": 2}), (3, {"type": "w", "n": [1, 2], "seq": 3})]


async def test_since_replays_and_says_when_frames_were_trimmed(make_store: StoreFactory) -> None:
    store = await make_store(outbox_keep=3)
    await store.push([("a", {"type": "f", "n": n}) for n in range(1, 6)])
    frames, recovered = await store.since("a", 0)
    assert [seq for seq, _ in frames] == [3, 4, 5] and not recovered
    frames, recovered = await store.since("a", 2)
    assert [f["n"] for _, f in frames] == [3, 4, 5] and recovered
    assert await store.since("a", 5) == ([], True)
    assert await store.since("a", 9) == ([], False)
    assert await store.since("nobody", 0) == ([], True)


async def test_a_push_from_another_store_wakes_a_listener(make_store: StoreFactory) -> None:
    first = await make_store()
    second = await make_store(domain=getattr(first, "domain", None))
    if type(first) is MemoryStore:
        second = first  # one process: the "other node" is the same store
    woke: dict[str, asyncio.Event] = {"a": asyncio.Event(), "b": asyncio.Event()}
    seen: list[tuple[str, int]] = []
    carried: list[list[tuple[int, str]]] = []

    async def wake(agent: str, seq: int, frames: Frames) -> None:
        seen.append((agent, seq))
        carried.append([(n, frame["type"]) for n, frame in frames])
        assert all(frame["seq"] == n for n, frame in frames)
        woke[agent].set()

    await first.listen("a", wake)
    await first.listen("b", wake)
    await second.push([("a", {"type": "x"}), ("a", {"type": "y"})])
    await asyncio.wait_for(woke["a"].wait(), WAIT_S)
    assert seen == [("a", 2)]
    assert carried == [[(1, "x"), (2, "y")]]  # the wake brings the frames: no outbox read
    # after unlisten "a" is silent; "b" still wakes, and wakes arrive in push order
    await first.unlisten("a", wake)
    await second.push([("a", {"type": "z"})])
    await second.push([("b", {"type": "x"})])
    await asyncio.wait_for(woke["b"].wait(), WAIT_S)
    assert seen == [("a", 2), ("b", 1)]
    await first.unlisten("b", wake)


# -- the durable log ------------------------------------------------------------------------


async def test_two_consumers_never_get_the_same_entry(store: Store) -> None:
    await store.ingest([ev(f"e{n}", f"s{n}@example.org") for n in range(10)], NOW)
    a = await store.read_log("A", 4, 0)
    b = await store.read_log("B", 100, 0)
    ids_a, ids_b = [e.event.id for e in a], [e.event.id for e in b]
    assert len(ids_a) == 4 and not set(ids_a) & set(ids_b)
    assert sorted(ids_a + ids_b) == sorted(f"e{n}" for n in range(10))
    await store.ack_log([e.entry_id for e in a + b])
    assert await store.read_log("C", 100, 0) == []


async def test_a_blocking_read_returns_when_an_event_arrives(store: Store) -> None:
    reader = asyncio.create_task(store.read_log("A", 10, 5000))
    await asyncio.sleep(0)
    await store.ingest([ev("e1")], NOW)
    entries = await asyncio.wait_for(reader, WAIT_S)
    assert [e.event.id for e in entries] == ["e1"]
    assert await store.read_log("A", 10, 1) == []


async def reclaim(store: Store, clock: FakeClock, consumer: str) -> list[LogEntry]:
    """Read as `consumer` until idle entries come back (the memory store uses the fake clock;
    Redis measures idleness itself, so real time has to pass)."""
    clock.advance(1)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        entries = await store.read_log(consumer, 10, 20)
        if entries:
            return entries
    return []


async def test_unacked_entries_are_reclaimed_and_applied_once(
    make_store: StoreFactory, clock: FakeClock
) -> None:
    store = await make_store(claim_idle_ms=150)
    await store.ingest([ev("e1"), ev("e2", "bob@example.org")], NOW)
    taken = await store.read_log("A", 10, 0)
    assert [e.event.id for e in taken] == ["e1", "e2"]
    conv, cust, ix = await store.apply_inbound(taken[0], NOW)  # then A dies
    assert await store.read_log("B", 10, 0) == []  # not idle yet
    back = await reclaim(store, clock, "B")
    assert [e.entry_id for e in back] == [e.entry_id for e in taken]
    assert back[0].event == taken[0].event
    conv2, cust2, ix2 = await store.apply_inbound(back[0], NOW + 5)
    assert (conv2, cust2, ix2) == (conv, cust, ix)
    assert cust.messages_in == 1 and len(await store.history(cust.id, 10)) == 1
    await store.ack_log([e.entry_id for e in back])
    clock.advance(10)
    assert await reclaim_once(store, "C") == []


async def reclaim_once(store: Store, consumer: str) -> list[LogEntry]:
    return await store.read_log(consumer, 10, 200)


async def test_two_nodes_ingesting_one_batch_store_it_once(make_store: StoreFactory) -> None:
    first = await make_store()
    second = await make_store(domain=getattr(first, "domain", None))
    if type(first) is MemoryStore:
        second = first  # one process: the "other node" is the same store
    batches = [[ev(f"e{n}", f"s{n}@example.org") for n in range(20)] for _ in range(2)]
    a, b = await asyncio.gather(first.ingest(batches[0], NOW), second.ingest(batches[1], NOW))
    assert all(x.conversation == y.conversation for x, y in zip(a, b, strict=True))
    assert sum(not r.duplicate for r in a + b) == 20
    assert len(await drain(second)) == 20


async def test_conversation_state_carries_the_agent(store: Store) -> None:
    [row] = await store.ingest([ev("e1")], NOW)
    await store.set_state(row.conversation, "offered", "ag-1")
    conv = await store.conversation(row.conversation)
    assert conv is not None and (conv.state, conv.agent) == ("offered", "ag-1")
    await store.set_state(row.conversation, "queued", None)
    conv = await store.conversation(row.conversation)
    assert conv is not None and (conv.state, conv.agent) == ("queued", None)
    with pytest.raises(StoreError):
        await store.set_state(row.conversation, "lost", None)


async def test_a_site_customer_without_an_address(store: Store) -> None:
    [row] = await store.ingest([ev("e1", "", customer_id="site-7")], NOW)
    cust = await store.customer("site-7")
    assert row.customer == "site-7" and cust is not None and cust.addresses == ()


async def test_every_listener_of_an_agent_wakes_until_the_last_leaves(store: Store) -> None:
    calls: list[str] = []
    done = {name: asyncio.Event() for name in ("one", "two", "other")}

    def one(agent: str, seq: int, _frames: Frames) -> None:
        calls.append(f"one:{agent}:{seq}")
        done["one"].set()

    async def two(agent: str, seq: int, _frames: Frames) -> None:
        calls.append(f"two:{agent}:{seq}")
        done["two"].set()

    async def other(agent: str, seq: int, _frames: Frames) -> None:
        done["other"].set()

    await store.listen("a", one)
    await store.listen("a", two)
    await store.listen("z", other)
    await store.push([("a", {"type": "x"})])
    await asyncio.wait_for(asyncio.gather(done["one"].wait(), done["two"].wait()), WAIT_S)
    assert sorted(calls) == ["one:a:1", "two:a:1"]
    await store.unlisten("a", one)
    await store.unlisten("a", two)
    await store.push([("a", {"type": "y"})])
    await store.push([("z", {"type": "y"})])  # wakes come in push order: "a" would be first
    await asyncio.wait_for(done["other"].wait(), WAIT_S)
    assert len(calls) == 2


# -- links and annotations --------------------------------------------------------------------


async def test_link_moves_addresses_to_the_customer_the_site_vouches_for(store: Store) -> None:
    [sms] = await store.ingest([ev("e1", "+4915112345678", channel="sms")], NOW)
    [chat] = await store.ingest([ev("e2", "visitor:c-42", customer_id="c-42")], NOW)
    await store.link("c-42", ["+4915112345678", "anna@example.org"])
    customer = await store.customer("c-42")
    assert customer is not None
    assert set(customer.addresses) == {"visitor:c-42", "+4915112345678", "anna@example.org"}
    previous = await store.customer(sms.customer)
    assert previous is not None and previous.addresses == ()
    [mail] = await store.ingest([ev("e3", "anna@example.org", channel="email")], NOW)
    assert (mail.customer, mail.conversation) == ("c-42", chat.conversation)
    with pytest.raises(UnknownCustomer):
        await store.link("nobody", ["x@example.org"])


async def test_annotate_merges_meta_into_an_interaction_and_threads_sent_mail(
    store: Store,
) -> None:
    [entry] = await ingest_apply(store, ev("e1", "anna@example.org", channel="email"))
    reply = await store.add_outbound(Reply(entry.conversation, "email", "Hello", "a1", NOW))
    sent = "<r1@omniroute.example>"
    assert await store.annotate(entry.customer, reply.id, {"message_id": sent, "n": 1})
    assert not await store.annotate(entry.customer, "ix-999", {"x": 1})
    assert not await store.annotate("nobody", reply.id, {"x": 1})
    [last] = await store.history(entry.customer, 1)
    assert (last.id, last.meta) == (reply.id, {"agent": "a1", "message_id": sent, "n": 1})
    answer = ev("e2", "other@example.org", channel="email", message_id="<a2@x>", in_reply_to=sent)
    [threaded] = await store.ingest([answer], NOW)
    assert threaded.conversation == entry.conversation


# -- the hot path: batches, acks in the push, the client-group cache ---------------------------


async def test_apply_many_applies_in_order_and_reports_each(store: Store) -> None:
    await store.ingest([ev("b1"), ev("b2"), ev("b3", "bob@example.org")], NOW)
    entries = await store.read_log("c1", 10, 0)
    applied = await store.apply_many(entries, NOW, 10)
    assert len(applied) == 3
    first, second, third = applied
    assert not isinstance(first, StoreError) and not isinstance(second, StoreError)
    assert not isinstance(third, StoreError)
    assert first[0].id == second[0].id != third[0].id  # one conversation per customer
    assert [i.body for i in second[3]] == ["body of b1", "body of b2"]  # history after both
    again = await store.apply_many(entries[:1], NOW, 10)  # a reclaimed entry: nothing twice
    assert not isinstance(again[0], StoreError)
    assert [i.body for i in again[0][3]] == ["body of b1", "body of b2"]


async def test_push_acknowledges_the_entries_it_finishes(store: Store) -> None:
    await store.ingest([ev("k1"), ev("k2", "bob@example.org")], NOW)
    entries = await store.read_log("c1", 10, 0)
    await store.push([("a", {"type": "x"})], ack=[entries[0].entry_id])
    await store.push([], ack=[entries[1].entry_id])  # an ack alone is fine too
    store.claim_idle_ms = 0  # anything unacknowledged would now be handed out again
    assert await store.read_log("c2", 10, 0) == []


async def test_concurrent_ingests_each_get_their_own_answer(store: Store) -> None:
    batches = [[ev(f"g{n}", f"g{n}@example.org")] for n in range(20)]
    batches.append([ev("g0", "g0@example.org")])  # a repeat, racing its original
    answers = await asyncio.gather(*(store.ingest(batch, NOW) for batch in batches))
    assert [a[0].event for a in answers] == [b[0].id for b in batches]
    assert sum(a[0].duplicate for a in answers) == 1
    assert answers[0][0].conversation == answers[-1][0].conversation
    assert len(await store.read_log("c1", 100, 0)) == 20


async def test_client_group_follows_a_change_made_through_another_node(
    make_store: StoreFactory,
) -> None:
    first = await make_store()
    second = await make_store(domain=getattr(first, "domain", None))
    if type(first) is MemoryStore:
        second = first
    [row] = await first.ingest([ev("cg1")], NOW)
    await drain(first)
    # a session listening makes the Redis store hear group changes (and cache groups)
    await first.listen("someone", lambda *_: None)
    assert await first.client_group(row.customer) == "normal"
    assert await first.client_group(row.customer) == "normal"  # now from the cache
    await second.set_group(row.customer, "SIC")

    async def regrouped() -> bool:
        return await first.client_group(row.customer) == "SIC"

    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not await regrouped():
        assert asyncio.get_running_loop().time() < deadline, "the group change was not heard"
        await asyncio.sleep(0.01)
    # a profile event can change the group too (the adapter knows better)
    await second.ingest([ev("cg2", profile={"client_group": "CSC"})], NOW)
    entries = await second.read_log("c2", 10, 0)
    await second.apply_many(entries, NOW, 0)
    while await first.client_group(row.customer) != "CSC":
        assert asyncio.get_running_loop().time() < deadline + WAIT_S, "profile change unheard"
        await asyncio.sleep(0.01)
    assert await first.client_group("nobody") is None


async def test_a_frame_for_the_holder_waits_for_the_offer_racing_it(store: Store) -> None:
    """Another node enqueued the conversation and is about to push its offer: a message that
    raced it reaches the agent right after the offer, never before it and never lost."""
    [row] = await store.ingest([ev("h1")], NOW)
    await drain(store)
    cv = row.conversation
    await store.push([], to_holder=[(cv, {"type": "message", "n": 1})])  # queued: it waits
    assert await store.since("a1", 0) == ([], True)
    await store.push([("a1", {"type": "offer"})], [(cv, "offered", "a1")])
    frames, _ = await store.since("a1", 0)
    assert [(n, f["type"]) for n, f in frames] == [(1, "offer"), (2, "message")]
    await store.push([], to_holder=[(cv, {"type": "message", "n": 2})])  # held: at once
    await store.push([("a1", {"type": "assigned"})], [(cv, "assigned", "a1")])  # nothing left
    frames, _ = await store.since("a1", 2)
    assert [(f["type"], f.get("n")) for _, f in frames] == [("message", 2), ("assigned", None)]
    await store.push([], [(cv, "closed", "a1")])
    await store.push([], to_holder=[(cv, {"type": "message", "n": 3})])  # closed: dropped
    assert await store.head("a1") == 4


# -- the engine switch ----------------------------------------------------------------------


def test_create_store_picks_the_backend_from_the_url() -> None:
    assert isinstance(create_store(None), MemoryStore)
    assert isinstance(create_store("memory", domain="d", claim_idle_ms=5), MemoryStore)
    redis_store = create_store("redis://127.0.0.1:1/0", domain="d", dedupe_s=7)
    assert isinstance(redis_store, RedisStore)  # not started: nothing connects yet
    assert (redis_store.domain, redis_store.dedupe_s) == ("d", 7)
    with pytest.raises(StoreError, match="memory"):
        create_store("postgres://db")
