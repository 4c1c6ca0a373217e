"""Guidance (`router.guidance`): `[[guidance.rules]]` checked at start, alerts and ranked
suggestions after an offer and an assignment, `suggestion.outcome` counted and kept, and the
tier filter on both — over real sockets where it is the server's behaviour."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from router.app import SERVICE_KEY
from router.delivery import customer_of
from router.guidance import Guidance, attributes, guidance_rules
from router.settings import load_settings
from router.settings_keys import SettingsError
from tests.support import DATA
from tests.test_e2e import Factory, Server, event, make_server, offered, take

__all__ = ["make_server"]  # the fixture, used by name

GUIDED = DATA / "guidance.toml"
RULES = GUIDED.read_text("utf-8")


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "omniroute.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


# -- the rules ----------------------------------------------------------------------------------


def test_rules_are_read_from_the_file() -> None:
    rules = guidance_rules({"rules": __import__("tomllib").loads(RULES)["guidance"]["rules"]})
    assert [(r.id, r.kind, r.weight) for r in rules] == [
        ("loyal", "alert", 0),
        ("winback-small", "suggestion", 5),
        ("winback-big", "suggestion", 10),
    ]


@pytest.mark.parametrize(
    ("row", "names"),
    [
        ('id = "a"\nkind = "nudge"\ntext = "x"', "#1 kind"),
        ('id = "a b"\nkind = "alert"\ntext = "x"', "#1 id"),
        ('id = "a"\nkind = "alert"', "#1 text"),
        ('id = "a"\nkind = "alert"\ntext = "x"\nlevel = "loud"', "#1 level"),
        ('id = "a"\nkind = "alert"\ntext = "x"\nweight = 3', "#1 weight"),
        ('id = "a"\nkind = "suggestion"\noffer = { id = "o", title = "t" }', "#1 offer"),
        (
            'id = "a"\nkind = "alert"\ntext = "x"\nwhen = [{ field = "coins", op = "gt" }]',
            "when #1",
        ),
        (
            'id = "a"\nkind = "alert"\ntext = "x"\n'
            'when = [{ field = "c", op = "gt", value = "y" }]',
            "when #1 value",
        ),
        ('id = "a"\nkind = "alert"\ntext = "x"\ncolour = "red"', "#1 colour: unknown key"),
    ],
)
def test_a_bad_rule_fails_at_start_naming_it(tmp_path: Path, row: str, names: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(write(tmp_path, f"[[guidance.rules]]\n{row}\n"), {})
    assert names in str(caught.value) and "\n" not in str(caught.value)


def test_two_rules_may_not_share_an_id(tmp_path: Path) -> None:
    twice = '[[guidance.rules]]\nid = "a"\nkind = "alert"\ntext = "x"\n' * 2
    with pytest.raises(SettingsError, match="used twice"):
        load_settings(write(tmp_path, twice), {})


def test_rules_come_from_files_only() -> None:
    with pytest.raises(SettingsError, match="files only"):
        load_settings(None, {"OMNIROUTE_GUIDANCE_RULES": "x"})


def test_the_conversation_counts_todays_contacts_and_the_wait() -> None:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    history = [
        {"direction": "in", "at": "2026-12-03T23:59:00.000Z"},
        {"direction": "out", "at": "2026-12-04T08:00:00.000Z"},
        {"direction": "in", "at": "2026-12-04T09:00:00.000Z"},
        {"direction": "in", "at": "2026-12-04T11:59:30.000Z"},
    ]
    attrs = attributes({"id": "c1", "coins": 3}, "sms", history, now)
    assert attrs["contacts_today"] == 2 and attrs["waited_s"] == 30.0
    assert attrs["channel"] == "sms" and attrs["coins"] == 3


def test_suggestions_are_ranked_by_weight_then_id() -> None:
    rules = guidance_rules({"rules": __import__("tomllib").loads(RULES)["guidance"]["rules"]})
    conv = {"id": "cv-1", "customer": {"id": "c1", "country": "DE", "top_up": True}}
    frames = Guidance(rules).frames(conv)
    assert [(f["type"], f["rule"], f.get("rank")) for f in frames] == [
        ("suggestion", "winback-big", 1),
        ("suggestion", "winback-small", 2),
    ]
    assert Guidance(rules).frames({"id": "cv-2", "customer": {"id": "c2"}}) == []


def test_the_frames_are_held_to_the_tier_filter() -> None:
    """Both kinds name their customer, so the send-time filter decides on them."""
    for kind in ("alert", "suggestion"):
        assert customer_of({"type": kind, "conversation": "cv-1", "customer": "c1"}) == (
            "c1",
            True,
        )


# -- over real sockets --------------------------------------------------------------------------


async def guided_server(make_server: Factory) -> Server:
    return await make_server(config=str(GUIDED))


def kinds_after(frames: list[dict[str, Any]], kind: str) -> list[tuple[str, Any]]:
    """The alerts and suggestions that follow the first frame of `kind`, up to the next frame
    of another type."""
    start = next(i for i, f in enumerate(frames) if f["type"] == kind)
    out = []
    for frame in frames[start + 1 :]:
        if frame["type"] not in ("alert", "suggestion"):
            break
        out.append((frame["type"], frame["rule"]))
    return out


async def test_the_agent_is_guided_at_offer_and_assignment(make_server: Factory) -> None:
    server = await guided_server(make_server)
    desk = await server.connect("a1")
    profile = {"coins": 150, "country": "DE", "top_up": True}
    conv = await server.send_event(event(body="I want to cancel", profile=profile))
    assigned = await take(desk, conv)
    after = await desk.quiet()
    expected = [("alert", "loyal"), ("suggestion", "winback-big"), ("suggestion", "winback-small")]
    assert kinds_after(desk.seen, "offer") == expected
    assert kinds_after([assigned, *after], "assigned") == expected
    suggestion = next(f for f in desk.seen if f["type"] == "suggestion")
    assert suggestion["conversation"] == conv and suggestion["offer"]["id"] == "wb-10"

    answer = await desk.request(
        "suggestion.outcome", conversation=conv, offer="wb-10", outcome="accepted"
    )
    assert answer["type"] == "ack"
    service = server.app[SERVICE_KEY]
    customer = assigned["conversation"]["customer"]["id"]
    history = await service.store.history(customer, 10)
    assert history[-1].meta.get("offer:wb-10") == "accepted"
    async with server.http.get(f"{server.base}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    outcomes = 'omniroute_suggestion_outcomes_total{offer="wb-10",outcome="accepted",'
    assert f'{outcomes}rule="winback-big"}} 1.0' in text
    assert 'omniroute_guidance_shown_total{kind="alert",rule="loyal"} 2.0' in text  # 2 moments


async def test_a_customer_no_rule_matches_gets_no_guidance(make_server: Factory) -> None:
    server = await guided_server(make_server)
    desk = await server.connect("a1")
    conv = await server.send_event(event(body="hello", profile={"coins": 5, "country": "FR"}))
    await offered(desk, conv)
    assert [f for f in await desk.quiet() if f["type"] in ("alert", "suggestion")] == []


async def test_outcomes_are_refused_when_they_cannot_be_true(make_server: Factory) -> None:
    server = await guided_server(make_server)
    a1 = await server.connect("a1")
    conv = await server.send_event(event(profile={"country": "DE", "top_up": True}))
    await take(a1, conv)
    a2 = await server.connect("a2")
    unknown = await a1.request("suggestion.outcome", conversation=conv, offer="nope",
                               outcome="accepted")  # fmt: skip
    assert unknown["type"] == "error" and unknown["code"] == "not_found"
    foreign = await a2.request("suggestion.outcome", conversation=conv, offer="wb-5",
                               outcome="declined")  # fmt: skip
    assert foreign["type"] == "error" and foreign["code"] == "forbidden"
    bad = await a1.request("suggestion.outcome", conversation=conv, offer="wb-5", outcome="maybe")
    assert bad["type"] == "error" and bad["code"] == "invalid" and bad["field"] == "outcome"


async def test_a_profile_edit_runs_the_rules_again(make_server: Factory, tmp_path: Path) -> None:
    rules = (
        RULES
        + """
[[guidance.rules]]
id = "teacher"
kind = "alert"
text = "Teachers get the education tariff"
when = [{ field = "job", op = "eq", value = "teacher" }]
"""
    )
    server = await make_server(config=write(tmp_path, rules))
    desk = await server.connect("a1")
    conv = await server.send_event(event(body="hi", profile={"country": "FR"}))
    assigned = await take(desk, conv)
    customer = assigned["conversation"]["customer"]
    assert [f for f in await desk.quiet() if f["type"] == "alert"] == []
    answer = await desk.request(
        "customer.update", customer=customer["id"], version=customer["version"],
        fields={"job": "teacher"},
    )  # fmt: skip
    assert answer["type"] == "customer"
    alerts = [f for f in await desk.quiet() if f["type"] == "alert"]
    assert [(a["rule"], a["conversation"]) for a in alerts] == [("teacher", conv)]
