"""router.frames: effects → frames and states, without I/O."""

from __future__ import annotations

from queues.effects import Assigned, Offer, OfferRevoked, PresenceChanged, TaskEnded
from router.frames import View, needed, shape
from store.model import Conversation, Customer, Interaction

CONV = Conversation("cv-1", "cu-1", "queued", None, ("chat",), "chat", "2026-12-03T10:00:00.000Z")
CUSTOMER = Customer("cu-1", 1, profile={"birthday": "2000-01-01"})
HELLO = Interaction("ix-1", "cv-1", "chat", "in", "2026-12-03T10:00:00.000Z", body="hello")
VIEWS: dict[str, View] = {"cv-1": (CONV, CUSTOMER, [HELLO])}


def test_an_offer_carries_the_conversation_and_announces_its_state() -> None:
    effects = [Offer("R1", "cv-1", "a1", "chat", 1_800_000_000.0)]
    assert needed(effects) == ["cv-1"]
    shaped = shape(effects, VIEWS)
    [(agent, frame)] = shaped.frames
    assert agent == "a1" and frame["type"] == "offer" and frame["reservation"] == "R1"
    assert frame["expires_at"] == "2027-01-15T08:00:00.000Z"
    conversation = frame["conversation"]
    assert conversation["state"] == "offered" and conversation["customer"]["id"] == "cu-1"
    assert isinstance(conversation["customer"]["age"], int)
    assert [i["body"] for i in conversation["history"]] == ["hello"]
    assert shaped.states == [("cv-1", "offered", "a1")] and shaped.offers == 1


def test_the_answer_rides_the_frame_it_names_or_an_ack() -> None:
    shaped = shape([Assigned("cv-1", "a1", "chat")], VIEWS, ("a1", 7, "assigned"))
    assert [(a, f["type"], f.get("ref")) for a, f in shaped.frames] == [("a1", "assigned", 7)]
    shaped = shape([TaskEnded("cv-1", "a1", "completed")], VIEWS, ("a1", "r", None))
    assert [(a, f) for a, f in shaped.frames] == [("a1", {"type": "ack", "ref": "r"})]
    assert shaped.states == [("cv-1", "closed", "a1")]


def test_a_second_calls_task_leaves_the_conversation_state_alone() -> None:
    shaped = shape([OfferRevoked("R2", "cv-1~call-9", "a2", "timeout")], {})
    assert shaped.frames[0][1]["conversation"] == "cv-1" and shaped.states == []


def test_agents_gone_offline_are_reported_to_the_caller() -> None:
    shaped = shape([PresenceChanged("a3", "offline"), PresenceChanged("a4", "away")], {})
    assert shaped.offline == ["a3"]
    assert [f["state"] for _, f in shaped.frames] == ["offline", "away"]
