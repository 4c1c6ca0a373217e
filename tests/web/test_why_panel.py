"""The "Why" panel on the ops page and the desktop, in Chromium against the real server."""

from __future__ import annotations

from playwright.async_api import expect

from tests.test_e2e import event
from tests.web.conftest import Browser, Site, ops_token, shot
from tests.web.test_desktop_page import (
    available_page,
    chat_taken,
)


async def test_ops_asks_why_a_conversation_waits(site: Site, browser: Browser) -> None:
    away = await site.desk("p1", "PAM")  # logged in, away: counted, not taking it
    conv = await site.post(event(sender="visitor:why-1", body="wo bleibt ihr?"))
    page = await browser.page(site.base)
    await page.goto(f"{site.base}/ops#token={ops_token()}")
    panel = page.get_by_role("region", name="Why")
    await expect(panel).to_be_visible()
    await panel.get_by_role("textbox", name="Conversation").fill(conv)
    await panel.get_by_role("button", name="Explain").click()
    await expect(panel.get_by_role("status")).to_contain_text(f"Conversation {conv}: waiting")
    decisions = panel.get_by_role("list", name="Routing decisions")
    await expect(decisions.get_by_role("listitem")).to_have_count(1)
    await expect(decisions).to_contain_text("enqueued")
    agents = panel.get_by_role("table", name="Agents by why they are not taking it")
    await expect(agents.get_by_role("rowheader", name="PAM")).to_be_visible()
    await expect(agents.get_by_role("columnheader", name="away")).to_be_visible()
    await expect(panel).to_contain_text("place in line: 1")
    await expect(page.get_by_text("wo bleibt ihr?")).to_have_count(0)  # ids and reasons only
    await shot(page, "ops-why")
    assert away.welcome["type"] == "welcome"


async def test_an_agent_asks_about_its_conversation_and_not_about_others(
    site: Site, browser: Browser
) -> None:
    page = await available_page(site, browser)
    await chat_taken(site, page, "v-why", "Hallo?")
    panel = page.get_by_role("region", name="Why")
    await panel.get_by_role("button", name="Explain").click()  # empty: the selected one
    decisions = panel.get_by_role("list", name="Routing decisions")
    await expect(decisions).to_contain_text("assigned")
    await expect(decisions).to_contain_text("longest idle")
    await expect(panel.get_by_role("table")).to_have_count(0)  # nothing waits

    await page.get_by_role("button", name="Away", exact=True).click()
    await expect(page.get_by_text("State: away")).to_be_visible()
    other = await site.post(event(sender="visitor:someone-else", body="hi"))  # not for a1
    await panel.get_by_role("textbox", name="Conversation").fill(other)
    await panel.get_by_role("button", name="Explain").click()
    await expect(panel.get_by_role("status")).to_contain_text("Not shown")
    await expect(panel.get_by_role("status")).to_contain_text("forbidden")
    await expect(decisions).to_have_count(0)
    # Chromium logs every refused request; this one refusal is the point of the test
    expected = (
        "console error: Failed to load resource: the server responded with a status of "
        "403 (Forbidden)"
    )
    assert browser.problems.count(expected) == 1, browser.problems
    browser.problems.remove(expected)
