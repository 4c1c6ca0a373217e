"""No accepted-but-untold work: a request whose answer was lost (its node died between the
engine's decision and the push) gets the answer again when retried, `welcome.held` lists what
the agent holds, and a request while the store is down is answered `unavailable`.

Real WebSockets against an in-process server (`tests/test_agent_ws.py`'s fixture).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests import test_agent_ws as sockets
from tests.support import start_redis, stop_redis
from tests.test_agent_ws import Factory, Server, chat, until

make_server = sockets.make_server  # the fixtures, shared
server = sockets.server


async def _offered(server: Server) -> tuple[Any, str, dict[str, Any]]:
    ws = await server.connect("c1", "CCS")
    await until(ws, "presence")
    await ws.send_json({"type": "presence.set", "state": "available", "ref": "av"})
    await until(ws, "presence")
    conversation = await server.route(chat(body="hello"))
    offer = await until(ws, "offer")
    return ws, conversation, offer


async def test_a_retried_accept_whose_answer_was_lost_is_answered_again(server: Server) -> None:
    ws, conversation, offer = await _offered(server)
    # the engine decides, the answer never goes out (as when the node dies right after)
    await server.service.engine.accept(offer["reservation"], "c1")
    await ws.send_json({"type": "offer.accept", "reservation": offer["reservation"], "ref": "r"})
    assigned = await until(ws, "assigned")
    assert assigned["ref"] == "r" and assigned["conversation"]["id"] == conversation
    conv = await server.store.conversation(conversation)
    assert conv is not None and (conv.state, conv.agent) == ("assigned", "c1")


async def test_an_accept_of_someone_elses_conversation_is_still_refused(
    make_server: Factory,
) -> None:
    srv = await make_server()
    ws, _conversation, offer = await _offered(srv)
    other = await srv.connect("c2", "CCS")
    await until(other, "presence")
    await other.send_json({"type": "offer.accept", "reservation": offer["reservation"], "ref": "x"})
    error = await until(other, "error")
    assert error["ref"] == "x" and error["code"] in ("forbidden", "not_found")
    await ws.close()


async def test_a_retried_complete_whose_answer_was_lost_is_answered_again(server: Server) -> None:
    ws, conversation, offer = await _offered(server)
    await ws.send_json({"type": "offer.accept", "reservation": offer["reservation"], "ref": "a"})
    await until(ws, "assigned")
    await server.service.engine.complete(conversation, "c1")  # decided, never told
    await ws.send_json({"type": "conversation.complete", "conversation": conversation, "ref": "c"})
    ack = await until(ws, "ack")
    assert ack["ref"] == "c"
    conv = await server.store.conversation(conversation)
    assert conv is not None and conv.state == "wrapup"


async def test_welcome_lists_the_work_the_agent_holds(server: Server) -> None:
    ws, conversation, offer = await _offered(server)
    await server.service.engine.accept(offer["reservation"], "c1")  # the answer was lost
    await ws.close()
    again = await server.connect("c1", "CCS")
    welcome = await until(again, "welcome")
    assert welcome["held"] == [{"conversation": conversation, "state": "assigned"}]


async def test_a_request_while_redis_is_down_gets_an_answer(
    make_server: Factory, tmp_path: Path
) -> None:
    """A node on a real Redis that is then stopped: the agent's request is answered
    `unavailable`, written past the outbox (which lives in the Redis that is down)."""
    process, url = await asyncio.to_thread(start_redis, tmp_path / "redis")
    try:
        srv = await make_server(redis_url=url)
        ws = await srv.connect("c1", "CCS")
        await until(ws, "presence")
        await asyncio.to_thread(stop_redis, process)
        await ws.send_json({"type": "presence.set", "state": "available", "ref": "p"})
        error = await until(ws, "error")
        assert (error["code"], error["ref"]) == ("unavailable", "p")
        assert "seq" not in error
        await ws.close()
    finally:
        await asyncio.to_thread(stop_redis, process)
