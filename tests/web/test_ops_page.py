"""The ops dashboard (`GET /ops`) in Chromium against the real server."""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.test_e2e import event
from tests.web.conftest import Browser, Proxy, Site, ops_token, shot

TWO_S = 2000


async def test_the_queue_table_shows_a_new_waiting_conversation_within_2_s(
    site: Site, browser: Browser
) -> None:
    page = await browser.page(site.base)
    await page.goto(f"{site.base}/ops#token={ops_token()}")
    assert "token" not in page.url
    table = page.get_by_role("table", name="Queues")
    await expect(table).to_be_visible()
    headers = await table.get_by_role("columnheader").all_inner_texts()
    for name in ("Queue", "Waiting", "Longest wait", "Service level", "Offered", "Answered"):
        assert name in headers, headers
    assert "Abandoned" in headers
    await expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    row = table.get_by_role("row").filter(has=page.get_by_role("rowheader", name="chat"))
    waiting = row.get_by_role("cell").nth(headers.index("Waiting") - 1)  # after the rowheader
    await expect(waiting).to_have_text("0")

    await site.post(event(sender="visitor:ops-1", body="niemand da?"))
    await expect(waiting).to_have_text("1", timeout=TWO_S)
    await expect(page.get_by_text(re.compile(r"Updated \d\d:\d\d:\d\d"))).to_be_visible()
    chart = page.get_by_role("img", name=re.compile(r"Now 1 waiting"))
    await expect(chart).to_be_visible(timeout=TWO_S)
    await expect(page.get_by_text("niemand da?")).to_have_count(0)  # counts only, no content

    desk = await site.desk("a1", "CCS")
    await desk.available()
    agents = page.get_by_role("table", name="Agents", exact=True)
    agent_row = agents.get_by_role("row").filter(has=page.get_by_role("rowheader", name="a1"))
    await expect(agent_row).to_contain_text("CCS", timeout=TWO_S)
    await expect(agent_row).to_contain_text(re.compile("cv-1"), timeout=TWO_S)  # offered to a1
    tiers = page.get_by_role("table", name="Agents by tier")
    await expect(tiers).to_be_visible()
    await shot(page, "ops")


async def test_a_stream_that_stops_is_shown_stale_and_comes_back(
    site: Site, proxy: Proxy, browser: Browser
) -> None:
    page = await browser.page(proxy.base)
    await page.goto(f"{proxy.base}/ops#token={ops_token()}")
    await expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    proxy.cut()
    stale = page.get_by_role("alert").filter(has_text="Stale: no update")
    await expect(stale).to_be_visible()
    await expect(page.get_by_role("status").filter(has_text="Connection lost")).to_be_visible()
    proxy.release()
    await expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    await expect(stale).to_be_hidden()
