"""Both pages fit a 1280x800 screen and a 390x844 phone without horizontal scrolling."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.web.conftest import Browser, Site, agent_token, ops_token, shot
from tests.web.test_desktop_page import accept_offer, go_available, sign_in

LONG = "Sehr lange Nachricht ohne Pause " * 12 + "https://example.org/" + "x" * 120

SCROLLS = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)], ids=["wide", "phone"])
async def test_the_pages_fit_without_horizontal_scrolling(
    site: Site, browser: Browser, width: int, height: int
) -> None:
    page = await browser.page(site.base, width, height)
    await sign_in(page, site, agent_token("a1", "CCS", "Anna Beispielname-Langform"))
    await go_available(page)
    visitor = await site.visitor("v-layout")
    await visitor.say(LONG)
    await accept_offer(page, "Sehr lange Nachricht")
    await visitor.say("Und noch ein zweites Anliegen")  # into the held conversation
    second = await site.visitor("v-layout-2")  # and an offer card beside it
    await second.say("Ein neuer Kunde wartet")
    await expect(
        page.get_by_role("listitem", name=r"Offer: chat from Customer cu-2")
    ).to_be_visible()
    await page.get_by_role("textbox", name="V-card").fill(LONG)
    assert await page.evaluate(SCROLLS) <= 0
    for control in ("Accept", "Send", "Complete", "Transfer", "Save", "SIC", "CSC", "Away"):
        button = page.get_by_role("button", name=control, exact=True)
        await expect(button.first).to_be_visible()
        box = await button.first.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, control
    await shot(page, f"desktop-{width}")

    ops = await browser.page(site.base, width, height)
    await ops.goto(f"{site.base}/ops#token={ops_token()}")
    await expect(ops.get_by_role("status").filter(has_text="Live")).to_be_visible()
    assert await ops.evaluate(SCROLLS) <= 0
    await shot(ops, f"ops-{width}")
