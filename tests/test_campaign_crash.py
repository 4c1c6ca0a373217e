"""A campaign on two real `omniroute serve` nodes sharing one Redis, one killed with `kill -9`
mid-campaign: no contact is lost, none is dialled twice.

Node A and node B both run the campaign loop, the log consumer and the job loop; the agents'
desktops are on B, the scripted PBX (tests/test_campaigns.py) counts every signed `dial` per
claim and posts the call's events to B. A is killed once dials are flowing, holding whatever
it held: contacts it claimed and had not sent (B sends them again after `recover_s`, ingest
dropping a repeat), log entries it read and had not finished (B takes them over after the
lease), dial jobs (B takes them over; a dial already sent is noted on the contact, so it is
not sent again). Every wait is bounded; every process is stopped in `finally`.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from chaos.harness import JWT_SECRET, WEBHOOK_SECRET, Node, timers
from tests.test_campaigns import DialingPbx, Worker, phone, running_pbx
from tests.test_e2e import Desk

N = 60
RUN_S = 60.0


def token(sub: str, tier: str, role: str = "agent") -> str:
    claims = {"sub": sub, "tier": tier, "name": sub, "role": role, "exp": int(time.time()) + 3600}
    claims["capacity"] = {"chat": 1, "voice": 1}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


async def test_a_node_killed_mid_campaign_loses_no_contact_and_dials_none_twice(
    redis_server: str, tmp_path: Path
) -> None:
    async with running_pbx(WEBHOOK_SECRET) as pbx:
        await campaign_with_a_crash(redis_server, tmp_path, pbx)


async def campaign_with_a_crash(redis_server: str, tmp_path: Path, dialing_pbx: DialingPbx) -> None:
    env = timers(events_lease_s=1.0, reservation_timeout_s=3.0)
    env.update({
        "OMNIROUTE_VOICE_PBX_URL": dialing_pbx.url, "OMNIROUTE_WRAPUP_VOICE": "0",
        "OMNIROUTE_WRAPUP_CHAT": "0", "OMNIROUTE_CAMPAIGNS_TICK_S": "0.1",
        "OMNIROUTE_CAMPAIGNS_RECOVER_S": "1", "OMNIROUTE_CAMPAIGNS_MAX_QUEUED": "8",
        "OMNIROUTE_SMS_DEFAULT_REGION": "DE",
    })  # fmt: skip
    node_a = Node("node-a", redis_server, tmp_path, env)
    node_b = Node("node-b", redis_server, tmp_path, env)
    ops = {"Authorization": f"Bearer {token('ops-1', 'SAM', 'ops')}"}
    offers: list[tuple[float, str, dict[str, Any]]] = []
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    async with aiohttp.ClientSession() as http:
        try:
            await node_a.start(http)
            await node_b.start(http)
            dialing_pbx.server = node_b.base
            workers = []
            for i in range(6):
                url = f"{node_b.base}/v1/agent/ws?token={token(f'a{i}', 'CCS')}"
                ws = await http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=10))
                desk = Desk(ws, f"a{i}")
                worker = Worker(desk, dialing_pbx, offers)
                tasks.append(asyncio.create_task(worker.read()))
                assert (await worker.request("ping"))["type"] == "ack"
                await worker.request("presence.set", state="available")
                workers.append(worker)
            tasks += [asyncio.create_task(w.work(stop)) for w in workers]
            body = {
                "id": "crash-1",
                "name": "Win-back Q1",
                "contacts": [{"id": f"k{i}", "phone": phone(i)} for i in range(N)],
                "tiers": ["CCS"],
                "window": {"starts_at": "2020-01-01T00:00:00Z", "ends_at": "2099-01-01T00:00:00Z"},
                "dispositions": ["won_back", "no_answer"],
            }
            async with http.post(f"{node_a.base}/v1/campaigns", json=body, headers=ops) as resp:
                assert resp.status == 201, await resp.text()
            deadline = time.monotonic() + RUN_S
            # both nodes' loops claim; wait until node A has sent some of them itself
            while len(dialing_pbx.dials) < 12 or "campaign.contact_sent" not in node_a.full_log():
                assert time.monotonic() < deadline, "no dials, or none of node A's"
                await asyncio.sleep(0.02)
            node_a.kill9()  # mid-campaign: it holds claims, log entries and jobs
            progress: dict[str, Any] = {}
            while progress.get("done") != N:
                for task in tasks:
                    if task.done():
                        task.result()  # an agent that failed says why
                assert time.monotonic() < deadline, json.dumps(progress)
                await asyncio.sleep(0.2)
                async with http.get(f"{node_b.base}/v1/campaigns/crash-1", headers=ops) as resp:
                    progress = (await resp.json())["progress"]
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(node_a.stop(), node_b.stop(), return_exceptions=True)
    assert progress["done_by_disposition"] == {"won_back": N}, progress
    per_claim = dialing_pbx.per_claim()
    assert set(per_claim.values()) == {1}, {c: n for c, n in per_claim.items() if n > 1}
    assert sorted({d["contact"] for d in dialing_pbx.dials}) == sorted(f"k{i}" for i in range(N))
    assert dialing_pbx.bad_signatures == 0
