"""A campaign contact on the desktop in Chromium: the outbound offer shows the campaign, the
contact's attributes and the customer card; Complete offers the campaign's dispositions, and
the chosen one is recorded on the contact."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import expect

from router.app import SERVICE_KEY
from tests.support import eventually
from tests.web.conftest import Browser, Site, agent_token, ops_token
from tests.web.test_desktop_page import go_available, sign_in

CAMPAIGN: dict[str, Any] = {
    "id": "winback-1",
    "name": "Win-back January",
    "contacts": [
        {
            "id": "k1",
            "phone": "+4915112345678",
            "customer_id": "shop-4711",
            "attributes": {"reason": "price", "tariff": "M"},
        },
    ],
    "tiers": ["CCS"],
    "window": {"starts_at": "2020-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z"},
    "dispositions": ["won_back", "price_too_high", "no_answer"],
}


async def test_an_outbound_offer_shows_the_campaign_and_completes_with_its_dispositions(
    site: Site, browser: Browser
) -> None:
    page = await browser.page(site.base)
    await sign_in(page, site, agent_token("a1", "CCS"))
    await go_available(page)
    headers = {"Authorization": f"Bearer {ops_token()}"}
    async with site.http.post(f"{site.base}/v1/campaigns", json=CAMPAIGN, headers=headers) as r:
        assert r.status == 201, await r.text()

    offer = page.get_by_role("listitem", name=re.compile(r"^Offer: outbound call to .*Win-back"))
    await expect(offer).to_be_visible()
    await expect(offer).to_contain_text("Campaign: Win-back January")
    contact = offer.get_by_role("definition")
    await expect(contact).to_have_text(["price", "M"])
    await offer.get_by_role("button", name="Accept", exact=True).click()
    await expect(offer).to_have_count(0)

    await expect(
        page.get_by_text(re.compile("outbound call, campaign: Win-back January"))
    ).to_be_visible()
    # the customer card beside the conversation, and the contact's attributes
    await expect(page.get_by_role("heading", name="Customer shop-4711", exact=True)).to_be_visible()
    attributes = page.get_by_label("Contact k1", exact=True).get_by_role("definition")
    await expect(attributes).to_have_text(["price", "M"])
    choice = page.get_by_role("combobox", name="Disposition")
    await expect(choice.get_by_role("option")).to_have_text(
        ["won_back", "price_too_high", "no_answer"]
    )
    await choice.select_option("price_too_high")
    await page.get_by_role("button", name="Complete", exact=True).click()

    store = site.app[SERVICE_KEY].campaigns.store

    async def recorded() -> bool:
        found = await store.contact("winback-1", "k1")
        return found is not None and found["status"] == "done"

    await eventually(recorded)
    found = await store.contact("winback-1", "k1")
    assert found is not None and found["disposition"] == "price_too_high"
