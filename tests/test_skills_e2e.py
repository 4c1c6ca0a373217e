"""Skills from the outside: an event's `skills`, a token's `skills` claim and `[skills] hard`,
over real sockets (DESIGN.md, "Skills"; docs/routing.md, "Skills")."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import jwt
import pytest

from router.cli import main as cli_main
from tests.test_e2e import (
    JWT_SECRET,
    Desk,
    Factory,
    Server,
    event,
    make_server,
    offered,
    open_desk,
    server,
)

__all__ = ["make_server", "server"]  # fixtures, used by name


def skilled_token(agent: str, skills: Any, tier: str = "CCS") -> str:
    claims = {"sub": agent, "tier": tier, "name": agent, "role": "agent", "skills": skills}
    claims["exp"] = int(time.time() + 3600)
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


async def desk(server: Server, agent: str, skills: Any) -> Desk:
    return await open_desk(server, agent, skilled_token(agent, skills))


async def test_work_that_needs_a_hard_skill_goes_to_the_agent_who_has_it(
    make_server: Factory,
) -> None:
    server = await make_server(skills_hard="de")
    plain = await desk(server, "plain", ["fr"])  # available first: longest idle
    german = await desk(server, "german", {"de": 4})
    conv = await server.send_event(event(body="Guten Tag", skills={"de": 3}))
    offer = await offered(german, conv)
    assert offer["conversation"]["id"] == conv
    # nothing for the agent without German: its ping comes back before any offer
    assert [f for f in await plain.quiet() if f["type"] == "offer"] == []
    other = await server.send_event(event(sender="visitor:other", body="hello"))
    assert (await offered(plain, other))["conversation"]["id"] == other


async def test_bad_event_skills_are_refused_naming_the_field(server: Server) -> None:
    status, answer = await server.post({"events": [event(skills={"de": 9})]})
    assert status == 400
    assert answer["error"]["field"] == "events[0].skills"


async def test_a_token_with_malformed_skills_is_refused(server: Server) -> None:
    url = f"{server.base}/v1/agent/ws?token={skilled_token('x', {'de': 'expert'})}"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await server.http.ws_connect(url)
    assert refused.value.status == 401


def test_the_token_command_writes_levelled_skills(capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("OMNIROUTE_JWT_SECRET", JWT_SECRET)
    assert cli_main(["token", "--agent", "a1", "--tier", "CCS", "--skills", "de:4, fr"]) == 0
    token = capsys.readouterr().out.strip()
    assert jwt.decode(token, JWT_SECRET, algorithms=["HS256"])["skills"] == {"de": 4, "fr": 1}
    assert cli_main(["token", "--agent", "a1", "--tier", "CCS", "--skills", "de,fr"]) == 0
    token = capsys.readouterr().out.strip()
    assert jwt.decode(token, JWT_SECRET, algorithms=["HS256"])["skills"] == ["de", "fr"]
