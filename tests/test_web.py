"""The web pages' HTTP side without a browser: headers, caching, weight, the config endpoint,
and the token offered as a WebSocket subprotocol (how a browser authenticates a socket)."""

from __future__ import annotations

import json
import re

import aiohttp
import pytest

from router.web import PAGES, content_security_policy, load_assets, page_weight
from tests.test_e2e import Factory, Server, make_server, make_token, server

__all__ = ["make_server", "server"]  # the e2e fixtures, used here too

BUDGET = 150 * 1024  # bytes: the whole page, scripts and styles, uncompressed


def test_each_page_with_everything_it_loads_stays_within_150_kb() -> None:
    assets = load_assets()
    for page in PAGES:
        weight = page_weight(page, assets)
        assert 10_000 < weight <= BUDGET, (page, weight)
    # page_weight follows what the HTML names and what the modules import
    assert page_weight("/desktop", assets) > len(assets["desktop.js"].body)


def test_no_file_names_another_origin() -> None:
    for name, asset in load_assets().items():
        text = asset.body.decode()
        urls = re.findall(r"(?:src|href|url|fetch|WebSocket)\s*[=(]\s*[\"']?(\w+:)?//", text)
        assert not [u for u in urls if u], name
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), name
        assert "https://" not in text.replace("https://example", ""), name


def test_the_policy_allows_only_this_origin() -> None:
    policy = content_security_policy("127.0.0.1:8080")
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080" in policy
    assert "connect-src 'self';" in content_security_policy('evil" host')


async def test_pages_are_served_cacheable_with_a_policy(server: Server) -> None:
    for path in ("/desktop", "/ops", "/web/desktop.js", "/web/common.js", "/web/style.css"):
        async with server.http.get(server.base + path) as resp:
            assert resp.status == 200, path
            body = await resp.read()
            etag = resp.headers["ETag"]
            assert resp.headers["Cache-Control"] == "no-cache"
            csp = resp.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "connect-src 'self' ws://" in csp
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
        async with server.http.get(server.base + path, headers={"If-None-Match": etag}) as again:
            assert again.status == 304 and not await again.read()
        assert body
    async with server.http.get(server.base + "/desktop") as resp:
        assert resp.content_type == "text/html"
    async with server.http.get(server.base + "/web/desktop.js") as resp:
        assert resp.content_type == "text/javascript"
    async with server.http.get(server.base + "/web/nothing.js") as resp:
        assert resp.status == 404
    async with server.http.get(server.base + "/web/..%2Fapp.py") as resp:
        assert resp.status == 404


async def test_the_desktop_config_needs_a_token_and_names_the_dispositions(
    make_server: Factory,
) -> None:
    server = await make_server(wrapup_dispositions="solved,callback")
    async with server.http.get(server.base + "/v1/desktop/config") as resp:
        assert resp.status == 401
    headers = {"Authorization": f"Bearer {make_token('a1')}"}
    async with server.http.get(server.base + "/v1/desktop/config", headers=headers) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["dispositions"] == ["solved", "callback"]
    assert body["wrapup_s"]["chat"] == 30.0 and body["tiers"] == ["TRN", "CCS", "PAM", "SAM"]


async def test_the_agent_socket_takes_the_token_as_a_subprotocol(server: Server) -> None:
    url = f"{server.base}/v1/agent/ws"
    offered = ("omniroute.v1.json", f"bearer.{make_token('a1', name='Anna')}")
    ws = await server.http.ws_connect(url, protocols=offered)
    try:
        assert ws.protocol == "omniroute.v1.json"
        welcome = json.loads((await ws.receive()).data)
        assert welcome["type"] == "welcome" and welcome["agent"]["name"] == "Anna"
    finally:
        await ws.close()
    bad = ("omniroute.v1.json", "bearer.not-a-token")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await server.http.ws_connect(url, protocols=bad)
    assert refused.value.status == 401
    ops = ("omniroute.v1.json", f"bearer.{make_token('o1', 'SAM', 'ops')}")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await server.http.ws_connect(url, protocols=ops)
    assert refused.value.status == 403


async def test_the_ops_stream_takes_the_token_as_a_subprotocol(server: Server) -> None:
    url = f"{server.base}/v1/ops/stream"
    ws = await server.http.ws_connect(
        url, protocols=("omniroute.v1.json", f"bearer.{server.ops_token()}")
    )
    try:
        assert ws.protocol == "omniroute.v1.json"
        snapshot = json.loads((await ws.receive()).data)
        assert snapshot["type"] == "snapshot"
    finally:
        await ws.close()
    agent = ("omniroute.v1.json", f"bearer.{make_token('a1')}")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await server.http.ws_connect(url, protocols=agent)
    assert refused.value.status == 403
