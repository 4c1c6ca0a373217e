"""The web agent desktop (`GET /desktop`) in Chromium against the real server."""

from __future__ import annotations

import re
import time
from typing import Any

from playwright.async_api import expect

from router.app import SERVICE_KEY
from tests.support import eventually
from tests.test_e2e import event, make_token
from tests.web.conftest import Browser, Frame, Proxy, Site, agent_token, shot

TWO_S = 2000  # ms: what "at once" means in these tests


async def sign_in(page: Any, site: Site, token: str, *, form: bool = False) -> None:
    """Open the desktop with the token in the fragment (or typed into the form), then wait
    for the welcome: the agent's state shown in the header."""
    if form:
        await page.goto(f"{site.base}/desktop")
        await page.get_by_role("textbox", name="Token").fill(token)
        await page.get_by_role("button", name="Sign in").click()
    else:
        await page.goto(f"{site.base}/desktop#token={token}")
    await expect(page.get_by_role("status").filter(has_text="Connected")).to_be_visible()
    await expect(page.get_by_text("State: away")).to_be_visible()


async def go_available(page: Any) -> None:
    await page.get_by_role("button", name="Available", exact=True).click()
    await expect(page.get_by_text("State: available")).to_be_visible()
    button = page.get_by_role("button", name="Available", exact=True)
    await expect(button).to_have_attribute("aria-pressed", "true")


async def accept_offer(page: Any, first_line: str) -> None:
    offer = page.get_by_role("listitem", name=re.compile(r"^Offer: chat"))
    await expect(offer).to_be_visible()
    await expect(offer).to_contain_text(first_line)
    await expect(offer).to_contain_text(re.compile(r"Expires in \d+ s"))
    await offer.get_by_role("button", name="Accept", exact=True).click()
    await expect(offer).to_have_count(0)
    timeline = page.get_by_role("list", name="Timeline")
    await expect(timeline).to_contain_text(first_line)


async def available_page(site: Site, browser: Browser) -> Any:
    """A desktop page signed in as a1 (CCS), available."""
    page = await browser.page(site.base)
    await sign_in(page, site, agent_token("a1", "CCS"))
    await go_available(page)
    return page


async def chat_taken(site: Site, page: Any, visitor_id: str, text: str) -> Frame:
    """`visitor_id` writes `text` on the chat; the page accepts the offer. The visitor's ack."""
    visitor = await site.visitor(visitor_id)
    ack = await visitor.say(text)
    await accept_offer(page, text)
    return ack


async def test_sign_in_accept_reply_and_complete(site: Site, browser: Browser) -> None:
    page = await browser.page(site.base)
    await sign_in(page, site, agent_token("a1", "CCS", "Anna"), form=True)
    assert "token" not in page.url
    await expect(page.get_by_text("Anna")).to_be_visible()
    await expect(page.get_by_text("CCS", exact=True)).to_be_visible()
    await go_available(page)

    visitor = await site.visitor("v-main")
    await visitor.say("Hallo, mein Login geht nicht")
    await accept_offer(page, "Hallo, mein Login geht nicht")
    await expect(page.get_by_role("button", name=re.compile(r"chat"))).to_be_visible()

    reply = page.get_by_role("textbox", name="Reply")
    await reply.fill("Guten Tag, ich schaue nach.")
    await expect(page.get_by_role("combobox", name="Channel")).to_have_value("chat")
    await page.get_by_role("button", name="Send", exact=True).click()
    answer = await visitor.until("message")
    assert answer["body"] == "Guten Tag, ich schaue nach." and answer["from"] == "agent"
    await expect(reply).to_have_value("")
    timeline = page.get_by_role("list", name="Timeline")
    await expect(timeline).to_contain_text("Guten Tag, ich schaue nach.")
    await shot(page, "desktop")

    await page.get_by_role("combobox", name="Disposition").select_option("follow-up")
    await page.get_by_role("button", name="Complete", exact=True).click()
    wrapup = page.get_by_text(re.compile(r"Wrap-up: \d+ s left · disposition: follow-up"))
    await expect(wrapup).to_be_visible()
    await expect(page.get_by_text("State: wrapup")).to_be_visible()
    await page.reload()  # the page rebuilds from the server's replay, wrap-up included
    await expect(page.get_by_role("status").filter(has_text="Connected")).to_be_visible()
    await expect(wrapup).to_be_visible()
    await expect(timeline).to_contain_text("Guten Tag, ich schaue nach.")
    await page.get_by_role("button", name="Finish wrap-up").click()
    await expect(page.get_by_text("You hold none.")).to_be_visible()
    await expect(page.get_by_text("State: available")).to_be_visible()


async def test_sic_by_a_pam_agent_removes_the_conversation_from_a_ccs_page(
    site: Site, browser: Browser
) -> None:
    page = await available_page(site, browser)
    ack = await chat_taken(site, page, "v-sic", "Ich habe eine Frage zu meinem Konto")
    await page.get_by_role("textbox", name="Reply").fill("halb getippt")
    await page.get_by_role("textbox", name="V-card").fill("notiert, nicht gespeichert")
    await expect(page.get_by_role("button", name="SIC", exact=True)).to_be_enabled()
    await expect(page.get_by_role("button", name="CSC", exact=True)).to_be_enabled()

    pam = await site.desk("p1", "PAM")
    answer = await pam.request("customer.classify", customer=ack["customer"], group="SIC")
    assert answer["type"] == "ack", answer

    timeline = page.get_by_role("list", name="Timeline")
    await expect(page.get_by_text("Ich habe eine Frage zu meinem Konto")).to_have_count(
        0, timeout=TWO_S
    )
    await expect(timeline).to_have_count(1)
    await expect(page.get_by_text("You hold none.")).to_be_visible(timeout=TWO_S)
    await expect(page.get_by_text(ack["customer"])).to_have_count(0)
    await expect(page.get_by_text(re.compile("for another tier"))).to_be_visible()
    kept = await page.evaluate("JSON.stringify(Object.values(sessionStorage))")
    assert "halb getippt" not in kept and "nicht gespeichert" not in kept
    await page.reload()
    await expect(page.get_by_role("status").filter(has_text="Connected")).to_be_visible()
    await expect(page.get_by_text("You hold none.")).to_be_visible()
    await expect(page.get_by_text("Ich habe eine Frage zu meinem Konto")).to_have_count(0)


async def test_a_stale_vcard_save_shows_both_texts_and_keeps_the_agents_text(
    site: Site, browser: Browser
) -> None:
    page = await available_page(site, browser)
    ack = await chat_taken(site, page, "v-vcard", "Bitte notieren Sie meine Lieblingsfarbe")
    vcard = page.get_by_role("textbox", name="V-card")
    await vcard.fill("mag Tee (von a1)")

    colleague = await site.desk("p1", "PAM")
    current = await colleague.request("customer.get", customer=ack["customer"])
    version = current["customer"]["version"]
    fields = {"vcard": "mag Kaffee (von p1)"}
    saved = await colleague.request(
        "customer.update", customer=ack["customer"], version=version, fields=fields
    )
    assert saved["type"] == "customer", saved

    await page.get_by_role("button", name="Save", exact=True).click()
    conflict = page.get_by_role("alert").filter(has_text="Changed by someone else")
    await expect(conflict).to_be_visible()
    await expect(conflict).to_contain_text("mag Kaffee (von p1)")
    await expect(conflict).to_contain_text("mag Tee (von a1)")
    await expect(vcard).to_have_value("mag Tee (von a1)")

    await page.reload()  # unsaved text survives a reload
    await expect(page.get_by_role("status").filter(has_text="Connected")).to_be_visible()
    await expect(vcard).to_have_value("mag Tee (von a1)")

    await page.get_by_role("button", name="Save", exact=True).click()  # deliberately: mine
    await expect(page.get_by_text(re.compile(r"Saved \(version \d+\)"))).to_be_visible()
    check = await colleague.request("customer.get", customer=ack["customer"])
    assert check["customer"]["vcard"] == "mag Tee (von a1)"
    await expect(vcard).to_have_value("mag Tee (von a1)")


async def test_a_dropped_connection_shows_resumes_and_loses_nothing(
    site: Site, proxy: Proxy, browser: Browser
) -> None:
    page = await browser.page(proxy.base)
    via = Site(proxy.base, site.app, site.http)  # the page's view of the server
    await sign_in(page, via, agent_token("a1", "CCS"))
    await go_available(page)
    visitor = await site.visitor("v-drop")
    await visitor.say("Erste Nachricht")
    await accept_offer(page, "Erste Nachricht")
    store = site.app[SERVICE_KEY].store
    head = await store.head("a1")

    proxy.cut()
    status = page.get_by_role("status").filter(has_text="Connection lost")
    await expect(status).to_be_visible()
    await visitor.say("Zweite, während der Lücke")
    await visitor.say("Dritte, während der Lücke")

    async def pushed() -> bool:
        return await store.head("a1") >= head + 2

    await eventually(pushed)
    timeline = page.get_by_role("list", name="Timeline")
    await expect(timeline).not_to_contain_text("Zweite")
    proxy.release()
    await expect(page.get_by_role("status").filter(has_text="nothing missed")).to_be_visible()
    await expect(timeline).to_contain_text("Zweite, während der Lücke")
    await expect(timeline).to_contain_text("Dritte, während der Lücke")
    await expect(page.get_by_text("Zweite, während der Lücke")).to_have_count(1)
    await expect(timeline.get_by_role("listitem")).to_have_count(3)

    # still usable: the reply goes out over the new socket (Ctrl+Enter sends)
    reply = page.get_by_role("textbox", name="Reply")
    await reply.fill("Alles angekommen.")
    await reply.press("Control+Enter")
    answer = await visitor.until("message")
    assert answer["body"] == "Alles angekommen."


async def test_keyboard_accept_and_transfer_to_a_colleague(site: Site, browser: Browser) -> None:
    page = await browser.page(site.base)
    await sign_in(page, site, agent_token("a1", "CCS"))
    shortcuts = page.get_by_role("group").filter(has_text="Keyboard shortcuts")
    await shortcuts.get_by_text("Keyboard shortcuts").click()
    await expect(shortcuts).to_contain_text("accept the oldest offer")
    await go_available(page)
    colleague = await site.desk("a2", "CCS")
    visitor = await site.visitor("v-transfer")
    await visitor.say("Bitte an die Kollegin weitergeben")
    offer = page.get_by_role("listitem", name=re.compile(r"^Offer: chat"))
    await expect(offer).to_be_visible()
    await page.keyboard.press("Alt+KeyA")
    await expect(offer).to_have_count(0)
    timeline = page.get_by_role("list", name="Timeline")
    await expect(timeline).to_contain_text("Bitte an die Kollegin weitergeben")

    await colleague.available()  # a transfer goes to an agent who is there
    await page.get_by_role("combobox", name="To agent or tier").fill("a2")
    await page.get_by_role("button", name="Transfer", exact=True).click()
    handed = await colleague.until("offer")
    bodies = [ix["body"] for ix in handed["conversation"]["history"]]
    assert bodies == ["Bitte an die Kollegin weitergeben"]  # with its history
    await expect(page.get_by_text("You hold none.")).to_be_visible()
    await expect(page.get_by_text("Bitte an die Kollegin weitergeben")).to_have_count(0)


async def test_reject_passes_the_offer_to_a_colleague(site: Site, browser: Browser) -> None:
    """Reject takes the offer off the desk and the conversation goes to someone else; it is
    not offered to this agent again."""
    page = await available_page(site, browser)
    colleague = await site.desk("a2", "CCS")  # connected, not yet available
    visitor = await site.visitor("v-reject")
    await visitor.say("Wer kann mir helfen?")
    offer = page.get_by_role("listitem", name=re.compile(r"^Offer: chat"))
    await expect(offer).to_contain_text("Wer kann mir helfen?")
    await offer.get_by_role("button", name="Reject", exact=True).click()
    await expect(offer).to_have_count(0)

    await colleague.available()  # the rejecting agent is passed over: the colleague gets it
    handed = await colleague.until("offer")
    assert [ix["body"] for ix in handed["conversation"]["history"]] == ["Wer kann mir helfen?"]


async def test_one_timeline_across_chat_sms_and_email(site: Site, browser: Browser) -> None:
    page = await available_page(site, browser)
    linked = {"customer_id": "c-42", "profile": {"birthday": "1990-04-01", "coins": 120}}
    await site.post(event(sender="visitor:c42", body="Per Chat: Hallo", **linked))
    await accept_offer(page, "Per Chat: Hallo")
    await site.post(
        event(
            sender="+4915112345678",
            channel="sms",
            body="Per SMS: bin unterwegs",
            customer_id="c-42",
        )
    )
    await site.post(
        event(
            sender="anna@example.org",
            channel="email",
            subject="Rechnung 2026-11",
            body="Per Mail: die Rechnung",
            customer_id="c-42",
        )
    )
    timeline = page.get_by_role("list", name="Timeline")
    await expect(timeline).to_contain_text("Per Chat: Hallo")
    await expect(timeline).to_contain_text("Per SMS: bin unterwegs")
    await expect(timeline).to_contain_text("Subject: Rechnung 2026-11")
    await expect(timeline).to_contain_text("email · received")
    channel = page.get_by_role("combobox", name="Channel")
    await expect(channel).to_have_value("email")  # the customer's last channel
    customer = page.get_by_role("region", name="Customer c-42", exact=True)
    await expect(customer).to_contain_text(re.compile(r"1990-04-01 \(age \d+\)"))
    await expect(customer).to_contain_text("120")


async def test_a_gap_the_server_cannot_replay_is_said_and_rebuilt(
    site: Site, proxy: Proxy, browser: Browser
) -> None:
    page = await browser.page(proxy.base)
    via = Site(proxy.base, site.app, site.http)
    await sign_in(page, via, agent_token("a1", "CCS"))
    proxy.cut()
    await expect(page.get_by_role("status").filter(has_text="Connection lost")).to_be_visible()
    store = site.app[SERVICE_KEY].store
    await store.push([("a1", {"type": "ack", "ref": None}) for _ in range(1001)])  # > kept
    proxy.release()
    rebuilt = page.get_by_role("status").filter(has_text="rebuilt after a gap")
    await expect(rebuilt).to_be_visible()


async def test_an_expired_token_asks_to_sign_in_again(site: Site, browser: Browser) -> None:
    page = await browser.page(site.base)
    expired = make_token("a1", "CCS", exp=time.time() - 60)
    await page.goto(f"{site.base}/desktop#token={expired}")
    await expect(
        page.get_by_role("alert").filter(has_text="The token has expired.")
    ).to_be_visible()
    await expect(page.get_by_role("textbox", name="Token")).to_be_visible()
