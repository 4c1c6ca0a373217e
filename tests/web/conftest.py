"""Browser tests: the real server in process (memory engine, 127.0.0.1, a free port), Debian's
Chromium driven by Playwright, real chat visitors and agent sockets beside it.

Controls are found by role and accessible name, never by CSS. Every page records its console:
an error there (or an uncaught exception, or a request to another origin) fails the test.
Waits are Playwright's `expect` with bounded timeouts, or `wait_for` on a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web

import queues
from router.app import SERVICE_KEY, create_app
from router.settings import load_settings
from tests.support import serve_app
from tests.test_e2e import WAIT, Desk, QuickStore, base_env, make_token, sign

CHROMIUM = "/usr/bin/chromium"
# Where the tests drop screenshots for docs/desktop.md, when asked to (a tooling variable).
SHOTS = os.environ.get("OMNIROUTE_TEST_SCREENSHOTS", "")

playwright_api = pytest.importorskip("playwright.async_api")
if not Path(CHROMIUM).exists():  # pragma: no cover - .ci/run installs it
    pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium", allow_module_level=True)

Frame = dict[str, Any]


class Visitor:
    """A customer's chat widget: a real socket on /v1/chat/ws."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[Frame] = []

    async def say(self, body: str) -> Frame:
        ref = uuid.uuid4().hex[:8]
        await self.ws.send_str(json.dumps({"type": "message", "body": body, "ref": ref}))
        return await self.until("ack", ref=ref)

    async def until(self, kind: str, **match: Any) -> Frame:
        async def scan() -> Frame:
            while True:
                msg = await self.ws.receive()
                if msg.type is not WSMsgType.TEXT:
                    raise AssertionError(f"visitor socket: {msg.type!r}")
                frame = json.loads(msg.data)
                self.seen.append(frame)
                if frame.get("type") == kind and all(frame.get(k) == v for k, v in match.items()):
                    return dict(frame)

        return await asyncio.wait_for(scan(), WAIT)


@dataclass
class Site:
    """One running server and the clients the test opened on it."""

    base: str
    app: web.Application
    http: aiohttp.ClientSession
    sockets: list[aiohttp.ClientWebSocketResponse] = field(default_factory=list)

    async def visitor(self, visitor: str = "v1", site: str = "de1") -> Visitor:
        url = f"{self.base}/v1/chat/ws?site={site}&visitor={visitor}"
        ws = await self.http.ws_connect(url)
        self.sockets.append(ws)
        chat = Visitor(ws)
        await chat.until("welcome")
        return chat

    async def desk(self, agent: str, tier: str) -> Desk:
        """An agent's socket outside the browser (a colleague at another desk)."""
        url = f"{self.base}/v1/agent/ws?token={make_token(agent, tier)}"
        ws = await self.http.ws_connect(url)
        self.sockets.append(ws)
        desk = Desk(ws, agent)
        desk.welcome = await desk.until("welcome")
        return desk

    async def post(self, event: Frame) -> str:
        body = json.dumps(event).encode()
        headers = {"Content-Type": "application/json", "X-Omniroute-Signature": sign(body)}
        async with self.http.post(f"{self.base}/v1/events", data=body, headers=headers) as resp:
            answer = await resp.json()
            assert resp.status == 202, answer
            return str(answer["conversations"][0])

    async def customer_of(self, conversation: str) -> str:
        conv = await self.app[SERVICE_KEY].store.conversation(conversation)
        assert conv is not None
        return conv.customer


@contextlib.asynccontextmanager
async def open_site(config: str | None = None) -> AsyncIterator[Site]:
    """A server of the memory engine on a free port, with the settings file `config` if
    given (a test that needs rules of its own, such as `[[guidance.rules]]`)."""
    domain = f"web-{uuid.uuid4().hex[:12]}"
    settings = load_settings(config, base_env(domain))
    engine = queues.create_engine(settings.policy, settings.redis.url, domain=settings.domain)
    app = create_app(settings, engine, QuickStore(domain), snapshot_interval_s=0.25)
    runner, base = await serve_app(app)
    running = Site(base, app, aiohttp.ClientSession())
    try:
        yield running
    finally:
        for ws in running.sockets:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), WAIT)
        await running.http.close()
        await asyncio.wait_for(runner.cleanup(), 15)


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    async with open_site() as running:
        yield running


class Browser:
    """Chromium with pages that fail the test on a console error or a foreign request."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.problems: list[str] = []
        self.contexts: list[Any] = []

    async def page(self, origin: str, width: int = 1280, height: int = 800) -> Any:
        context = await self.browser.new_context(viewport={"width": width, "height": height})
        self.contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(WAIT * 1000)

        def console(message: Any) -> None:
            if message.type == "error":
                self.problems.append(f"console error: {message.text}")

        def request(req: Any) -> None:
            if not req.url.startswith(origin + "/"):
                self.problems.append(f"request to another origin: {req.url}")

        page.on("console", console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("request", request)
        return page


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM)
        held = Browser(chromium)
        try:
            yield held
        finally:
            for context in held.contexts:
                await context.close()
            await chromium.close()
        assert not held.problems, held.problems


async def shot(page: Any, name: str) -> None:
    """A screenshot for docs/desktop.md, when OMNIROUTE_TEST_SCREENSHOTS names a folder."""
    if SHOTS:
        await page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


def agent_token(agent: str, tier: str = "CCS", name: str | None = None) -> str:
    return make_token(agent, tier, name=name or f"Agent {agent}")


def ops_token() -> str:
    return make_token("ops-1", "SAM", "ops")


class Proxy:
    """A TCP proxy in front of the server, so a test can cut the browser's connections and
    hold new ones (they wait, unanswered, instead of failing) until it lets them through."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.removeprefix("http://").partition(":")
        self.upstream = (host, int(port))
        self.open = asyncio.Event()
        self.open.set()
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.base = ""

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        return self.base

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            await self.open.wait()
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            self.writers.add(up_writer)
            await asyncio.gather(
                _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
            )
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            for w in (writer,):
                w.transport.abort()

    def cut(self) -> None:
        """Drop every connection now and hold the next ones."""
        self.open.clear()
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()

    def release(self) -> None:
        self.open.set()

    async def close(self) -> None:
        self.cut()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.transport.abort()


@pytest.fixture
async def proxy(site: Site) -> AsyncIterator[Proxy]:
    held = Proxy(site.base)
    await held.start()
    try:
        yield held
    finally:
        await held.close()
