"""An SMS provider on loopback (`Provider`: records what it is sent, or hangs as a black hole)
and the scenario of a reply in flight when its node dies (`reply_kill`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp

from chaos.cluster import LEASE_S, cluster
from chaos.harness import Desktop, agent_token, desktops, post_events, wait_until
from chaos.scenarios import Figures

# -- a reply in flight when its node dies ---------------------------------------------------------

SMS_ENV = {
    "OMNIROUTE_SMS_ACCOUNT_SID": "AC" + "0" * 32,
    "OMNIROUTE_SMS_AUTH_TOKEN": "chaos-sms-auth-token",
    "OMNIROUTE_SMS_FROM_NUMBER": "+4930123456",
}
MOBILE = "+4917612345678"


class Provider:
    """A Messages API that records what it is sent and answers 201 with a sid; or, as a black
    hole, takes the connection and never answers (a provider the dying node is stuck on)."""

    def __init__(self, black_hole: bool = False) -> None:
        self.black_hole = black_hole
        self.bodies: list[str] = []
        self.forms: list[dict[str, str]] = []  # every form it was sent, whole
        self.at: list[float] = []  # when each arrived (monotonic)
        self.seen = asyncio.Event()
        self._closing = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        with contextlib.suppress(Exception):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            form = dict(parse_qsl((await reader.readexactly(length)).decode()))
            self.seen.set()
            if self.black_hole:
                await self._closing.wait()
                return
            self.bodies.append(form.get("Body", ""))
            self.forms.append(form)
            self.at.append(time.monotonic())
            sid = f"SM{len(self.bodies):032d}"
            body = json.dumps({"sid": sid, "status": "queued"}).encode()
            writer.write(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n")
            writer.write(b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        writer.close()
        self._writers.discard(writer)

    async def close(self) -> None:
        self._closing.set()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        if self._server is not None:
            await self._server.wait_closed()


async def reply_kill(workdir: Path) -> Figures:
    """An agent's SMS reply is acknowledged by node A, whose provider connection hangs; A is
    killed with SIGKILL and node B started. B takes the reply over and sends it: the provider
    gets it exactly once, and the agent, reconnected to B, hears `message.status` `sent`."""
    stuck, provider = Provider(black_hole=True), Provider()
    await stuck.start()
    await provider.start()
    try:
        async with cluster(workdir) as c:
            assert c.http is not None
            a = await c.node("node-a", {**SMS_ENV, "OMNIROUTE_SMS_API_BASE_URL": stuck.url})
            async with desktops(c.http, [("replier", "CCS", a, True)]) as (desk,):
                desk.finish = False
                event = {"id": "m-1", "type": "message", "channel": "sms", "from": MOBILE,
                         "body": "where is my parcel?"}  # fmt: skip
                (conv,) = await post_events(c.http, a, [event])
                await wait_until(lambda: conv in desk.assigned, 10.0, lambda: "not assigned")
                desk.send({"type": "message.send", "conversation": conv, "body": "on its way",
                           "channel": "sms"})  # fmt: skip
                acked = await _frame(desk, "ack", 10.0)
                interaction = acked["interaction"]["id"]
                await asyncio.wait_for(stuck.seen.wait(), 10.0)  # A is sending it right now
                a.kill9()
                killed_at = time.monotonic()
                seq = max(f.get("seq", 0) for f in desk.frames)
            # the survivor (started now, so the job was surely A's): it takes A over
            b = await c.node("node-b", {**SMS_ENV, "OMNIROUTE_SMS_API_BASE_URL": provider.url})
            await wait_until(lambda: len(provider.bodies) >= 1, 15.0, lambda: "never sent")
            token = agent_token("replier", "CCS")
            url = f"{b.base}/v1/agent/ws?since={seq}"
            async with c.http.ws_connect(url, headers={"Authorization": f"Bearer {token}"}) as ws:
                status = await _status_of(ws, interaction)
            await asyncio.sleep(2 * LEASE_S)  # time for a second send, if there were one
        figures: Figures = {
            "acked": 1,
            "sent_by_survivor": len(provider.bodies),
            "sent_after_kill_s": round(provider.at[0] - killed_at, 2),  # B's start included
            "agent_told": status,
        }
    finally:
        await stuck.close()
        await provider.close()
    assert provider.bodies == ["on its way"], f"the provider got {provider.bodies}"
    assert status == "sent", f"the agent was told {status}"
    return figures


async def _frame(desk: Desktop, kind: str, within: float) -> dict[str, Any]:
    await wait_until(
        lambda: any(f["type"] == kind for f in desk.frames), within, lambda: f"no {kind}"
    )
    return next(f for f in desk.frames if f["type"] == kind)


async def _status_of(ws: aiohttp.ClientWebSocketResponse, interaction: str) -> str:
    async def scan() -> str:
        async for message in ws:
            frame = json.loads(message.data)
            if frame["type"] == "message.status" and frame["interaction"] == interaction:
                return str(frame["status"])
        return "closed"

    return await asyncio.wait_for(scan(), 15.0)
