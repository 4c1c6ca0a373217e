"""The desktop's guidance panel (alerts and ranked suggestions, router/guidance.py) in Chromium
against a server whose settings file holds `[[guidance.rules]]`."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from router.app import SERVICE_KEY
from tests.support import eventually
from tests.test_e2e import event
from tests.test_guidance import RULES as GUIDED
from tests.web.conftest import Browser, Site, open_site, shot
from tests.web.test_desktop_page import (
    accept_offer,
    available_page,
)

# the rules of tests/test_guidance.py, and a second alert
RULES = (
    GUIDED
    + """
[[guidance.rules]]
id = "topped-up"
kind = "alert"
text = "Has topped up before"
when = [{ field = "top_up", op = "truthy", value = true }]
"""
)
MATCHING = {"coins": 150, "country": "DE", "top_up": True}
OTHER = {"coins": 5, "country": "FR"}


@pytest.fixture
async def guided(tmp_path: Path) -> AsyncIterator[Site]:
    config = tmp_path / "omniroute.toml"
    config.write_text(RULES, encoding="utf-8")
    async with open_site(str(config)) as running:
        yield running


async def metrics(site: Site) -> str:
    async with site.http.get(f"{site.base}/metrics") as response:
        assert response.status == 200
        return await response.text()


def outcome_line(offer: str, outcome: str, rule: str) -> str:
    return (
        f'omniroute_suggestion_outcomes_total{{offer="{offer}",outcome="{outcome}",'
        f'rule="{rule}"}} 1.0'
    )


async def counted(site: Site, line: str) -> None:
    async def there() -> bool:
        return line in await metrics(site)

    await eventually(there)


async def test_alerts_and_ranked_suggestions_are_shown_and_answered(
    guided: Site, browser: Browser
) -> None:
    page = await available_page(guided, browser)
    body = "Ich will mein Abo kündigen"
    conv = await guided.post(event(sender="visitor:g1", body=body, profile=MATCHING))
    await accept_offer(page, body)

    alerts = page.get_by_role("region", name="Alerts", exact=True)
    await expect(alerts).to_be_visible()
    # offer and assignment both sent each rule: shown once, with its level
    await expect(alerts.get_by_role("listitem")).to_have_text(
        ["Warning: Holds 100 coins or more: thank them", "Info: Has topped up before"]
    )
    suggestions = page.get_by_role("region", name="Suggestions", exact=True)
    items = suggestions.get_by_role("listitem")
    await expect(items).to_have_count(2)
    await expect(items.nth(0)).to_contain_text("10 % off")  # rank 1: the heavier rule
    await expect(items.nth(0)).to_contain_text("Ten per cent off for three months")
    await expect(items.nth(1)).to_contain_text("5 % off")
    await shot(page, "desktop-guidance")

    await suggestions.get_by_role("button", name="Accept offer: 10 % off").click()
    await expect(items.nth(0)).to_contain_text("Offer accepted")
    await expect(items.nth(0).get_by_role("button")).to_have_count(0)
    await counted(guided, outcome_line("wb-10", "accepted", "winback-big"))
    store = guided.app[SERVICE_KEY].store
    history = await store.history(await guided.customer_of(conv), 10)
    assert history[-1].meta.get("offer:wb-10") == "accepted"

    await suggestions.get_by_role("button", name="Decline offer: 5 % off").click()
    await expect(items.nth(1)).to_contain_text("Offer declined")
    await counted(guided, outcome_line("wb-5", "declined", "winback-small"))

    await page.reload()  # the answers come back with the replayed acks
    await expect(page.get_by_role("status").filter(has_text="Connected")).to_be_visible()
    await expect(items).to_have_count(2)
    await expect(items.nth(0)).to_contain_text("Offer accepted")
    await expect(items.nth(1)).to_contain_text("Offer declined")
    await expect(suggestions.get_by_role("button")).to_have_count(0)
    await expect(alerts.get_by_role("listitem")).to_have_count(2)

    await page.get_by_role("button", name="Complete", exact=True).click()  # they go with it
    await expect(page.get_by_text(re.compile(r"Wrap-up: \d+ s left"))).to_be_visible()
    await expect(alerts).to_have_count(0)
    await expect(suggestions).to_have_count(0)


async def test_guidance_belongs_to_its_conversation(guided: Site, browser: Browser) -> None:
    page = await available_page(guided, browser)
    await guided.post(event(sender="visitor:g2", body="Erste Kundin", profile=MATCHING))
    await accept_offer(page, "Erste Kundin")
    alerts = page.get_by_role("region", name="Alerts", exact=True)
    suggestions = page.get_by_role("region", name="Suggestions", exact=True)
    await expect(alerts).to_be_visible()

    other: dict[str, Any] = {"customer_id": "c-other", "profile": OTHER}
    await guided.post(event(sender="visitor:g3", body="Zweiter Kunde", **other))
    offer = page.get_by_role("listitem", name=re.compile(r"^Offer: chat"))
    await offer.get_by_role("button", name="Accept", exact=True).click()
    await expect(offer).to_have_count(0)
    await page.get_by_role("button", name=re.compile(r"^Customer c-other")).click()
    # a later message of the same customer comes after any guidance of its assignment
    await guided.post(event(sender="visitor:g3", body="Noch etwas", **other))
    timeline = page.get_by_role("list", name="Timeline")
    await expect(timeline).to_contain_text("Noch etwas")
    await expect(alerts).to_have_count(0)  # no rule matches this customer
    await expect(suggestions).to_have_count(0)

    await page.get_by_role("button", name=re.compile(r"^Customer (?!c-other)")).click()
    await expect(timeline).to_contain_text("Erste Kundin")
    await expect(alerts.get_by_role("listitem")).to_have_count(2)
    await expect(suggestions.get_by_role("listitem")).to_have_count(2)
