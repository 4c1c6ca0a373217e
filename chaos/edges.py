"""Edge scenarios of timing and repetition at the protocol's rim: an accept racing its
time-out, webhooks twice and out of order. Each starts its own Redis and node
(`chaos.cluster`), returns its figures and raises `AssertionError` naming the promise it broke;
`tests/test_chaos_edges.py` runs them small. Hostile input (forged tokens, frames, bombs,
signatures) is `chaos.hostile`'s.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from channels.sms.status import STATUS_RANK
from chaos.cluster import cluster
from chaos.harness import Desktop, chat_event, desktops, post_raw, sign, wait_until
from chaos.provider import MOBILE, SMS_ENV, Provider
from chaos.scenarios import Figures, until_drained
from chaos.signed import PUBLIC, SMS_PATH, twilio_form
from store.redis import RedisStore

# -- an accept racing its reservation's time-out ------------------------------------------------

# where, around the deadline, each accept is sent (s): before, at, after it
RACE_OFFSETS = (-0.04, -0.02, -0.01, 0.0, 0.0, 0.01, 0.02, 0.04)


@dataclass
class Racer(Desktop):
    """A desktop that answers every offer at its `expires_at` (give or take `RACE_OFFSETS`),
    records each reservation's outcomes, and comes back when a time-out sent it away."""

    accept: bool = False  # not at once: at the deadline
    racing: bool = True  # False: enough races, accept what comes at once (not counted)
    outcomes: dict[str, list[str]] = field(default_factory=dict)  # reservation → outcomes
    conv_of: dict[str, str] = field(default_factory=dict)  # reservation → conversation
    _timers: list[asyncio.TimerHandle] = field(default_factory=list)

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "offer" and not self.racing:
            self.send({"type": "offer.accept", "reservation": frame["reservation"]})
        elif kind == "offer":
            reservation = frame["reservation"]
            self.conv_of[reservation] = frame["conversation"]["id"]
            self.outcomes.setdefault(reservation, [])
            expires = datetime.fromisoformat(frame["expires_at"]).timestamp()
            offset = RACE_OFFSETS[len(self.conv_of) % len(RACE_OFFSETS)]
            delay = max(0.0, expires - time.time() + offset)
            loop = asyncio.get_running_loop()
            accept = {"type": "offer.accept", "reservation": reservation}
            self._timers.append(loop.call_later(delay, self.send, accept))
        elif kind == "offer.revoked":
            self.outcomes.setdefault(frame["reservation"], []).append(f"revoked:{frame['reason']}")
        elif kind == "assigned":
            conv = frame["conversation"]["id"]
            held = [r for r, c in self.conv_of.items() if c == conv and not self.outcomes[r]]
            for reservation in held[-1:]:  # the one open reservation of this conversation
                self.outcomes[reservation].append("assigned")
        elif kind == "presence" and frame.get("state") == "away":
            self.send({"type": "presence.set", "state": "available"})  # a time-out's away
        super()._handle(frame)

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        await super().close()


async def accept_race(workdir: Path, races: int = 1000, agents: int = 40) -> Figures:
    """Offers answered right at their deadline (a short reservation time-out): every
    reservation has exactly one outcome, assigned or revoked, never both, never none."""
    async with cluster(workdir) as c:
        node = await c.node("node-a", reservation_timeout_s=1.0)
        assert c.http is not None
        racers = [Racer(f"race{n}", "SAM", node, accept=False) for n in range(agents)]
        try:
            await asyncio.gather(*(r.connect(c.http) for r in racers))
            posted, deadline = 0, time.monotonic() + 30.0 + races / 10
            while sum(len(r.conv_of) for r in racers) < races:
                assert time.monotonic() < deadline, f"only {posted} posted, too few offers"
                if posted - sum(len(r.assigned) for r in racers) < 2 * agents:
                    chunk = [chat_event(f"ar-{posted + i}", f"ar-c{posted + i}", None)
                             for i in range(10)]  # fmt: skip
                    status, _ = await post_raw(c.http, node, sign({"events": chunk}))
                    assert status == 202, status
                    posted += len(chunk)
                await asyncio.sleep(0.05)
            for racer in racers:
                racer.racing = False  # re-offers of what timed out are accepted at once

            def open_races() -> int:
                return sum(not seen for r in racers for seen in r.outcomes.values())

            await wait_until(lambda: not open_races(), 15.0, lambda: f"{open_races()} open")
        finally:
            await asyncio.gather(*(r.close() for r in racers), return_exceptions=True)
    outcomes = Counter[str]()
    for racer in racers:
        for seen in racer.outcomes.values():
            outcomes["none" if not seen else "both" if len(seen) > 1 else seen[0]] += 1
    figures: Figures = {
        "races": sum(outcomes.values()),
        "assigned": outcomes["assigned"],
        "revoked_timeout": outcomes["revoked:timeout"],
        "revoked_other": sum(n for k, n in outcomes.items() if k.startswith("revoked:"))
        - outcomes["revoked:timeout"],
        "both": outcomes["both"],
        "none": outcomes["none"],
    }
    assert figures["both"] == 0, f"{figures['both']} reservations were assigned and revoked"
    assert figures["none"] == 0, f"{figures['none']} reservations never had an outcome"
    assert outcomes["assigned"] and outcomes["revoked:timeout"], f"no race on both sides {outcomes}"
    return figures


# -- duplicate and reordered webhooks ------------------------------------------------------------


async def webhooks(workdir: Path, copies: int = 20) -> Figures:
    """One signed chat event posted `copies` times at once and again in a row, one Twilio
    inbound SMS likewise, then the status callbacks of a reply out of order and twice: one
    conversation and one interaction each, and the reply's status never moves backwards."""
    provider = Provider()
    await provider.start()
    try:
        async with cluster(workdir) as c:
            env = {**SMS_ENV, "OMNIROUTE_SMS_API_BASE_URL": provider.url,
                   "OMNIROUTE_SERVER_PUBLIC_URL": PUBLIC}  # fmt: skip
            node = await c.node("node-a", env)
            assert c.http is not None
            async with desktops(c.http, [("hooks", "SAM", node, True)]) as (desk,):
                desk.finish = False
                signed = sign(chat_event("dup-1", "dup-cust", None))
                first = await asyncio.gather(
                    *(post_raw(c.http, node, signed) for _ in range(copies))
                )
                again = [await post_raw(c.http, node, signed) for _ in range(copies)]
                answers = [a for _, a in first + again]
                accepted = sum(int(a["accepted"]) for a in answers)
                chat_conv = {a["conversations"][0] for a in answers}
                sms = {"MessageSid": "SM" + "d" * 32, "From": MOBILE, "To": "+4930123456",
                       "Body": "twice?"}  # fmt: skip
                sms_status = await asyncio.gather(
                    *(twilio_form(c.http, node, SMS_PATH, sms) for _ in range(copies))
                )
                await wait_until(lambda: len(desk.assigned) >= 2, 10.0, lambda: f"{desk.frames}")
                await until_drained(
                    c.redis_url, 10.0
                )  # everything accepted is routed: a duplicate too
                sms_conv = next(a for a in desk.assigned if a not in chat_conv)
                desk.send({"type": "message.send", "conversation": sms_conv, "body": "yes",
                           "channel": "sms"})  # fmt: skip
                await wait_until(lambda: len(provider.forms) >= 1, 10.0, lambda: "never sent")
                callback = provider.forms[0]["StatusCallback"]
                path = callback.removeprefix(PUBLIC)
                sid = "SM" + "1" * 32
                order = ("delivered", "sent", "queued", "delivered", "sent")
                codes = []
                for status in order:
                    form = {"MessageSid": sid, "MessageStatus": status}
                    codes.append(await twilio_form(c.http, node, path, form))
                await wait_until(lambda: any(f.get("status") == "delivered" for f in desk.frames),
                                 10.0, lambda: "the agent never heard `delivered`")  # fmt: skip
                told = [f["status"] for f in desk.frames if f["type"] == "message.status"]
                customer = dict(p.split("=") for p in path.split("?")[1].split("&"))["cu"]
                store = RedisStore(c.redis_url)
                await store.start()
                try:
                    history = await store.history(customer, 50)
                    for conv in chat_conv:
                        held = await store.conversation(conv)
                        assert held is not None
                finally:
                    await store.close()
            offers = Counter(f["conversation"]["id"] for f in desk.frames if f["type"] == "offer")
            messages = Counter(
                f["interaction"]["id"] for f in desk.frames if f["type"] == "message"
            )
    finally:
        await provider.close()
    inbound = [i for i in history if i.direction == "in"]
    reply = next(i for i in history if i.direction == "out")
    final = str(reply.meta.get("sms_status"))
    wire = {"sent": 1, "delivered": 2, "failed": 2}
    backwards = sum(1 for a, b in itertools.pairwise(told) if wire[b] < wire[a])
    figures: Figures = {
        "posted": 3 * copies,
        "chat_accepted": accepted,
        "sms_answers": " ".join(f"{k}:{v}" for k, v in sorted(Counter(sms_status).items())),
        "duplicates_routed": (accepted - 1)
        + (len(inbound) - 1)
        + sum(n - 1 for n in offers.values())
        + sum(n - 1 for n in messages.values()),
        "callbacks": " ".join(f"{k}:{v}" for k, v in sorted(Counter(codes).items())),
        "agent_told": ",".join(told),
        "final_status": final,
        "backwards": backwards,
    }
    assert len(chat_conv) == 1, f"one event, {len(chat_conv)} conversations"
    assert figures["duplicates_routed"] == 0, f"duplicates routed: {figures}"
    assert final == "delivered" and backwards == 0, f"the status moved backwards: {figures}"
    assert STATUS_RANK[final] == max(STATUS_RANK[s] for s in order), f"final {final}"
    return figures
