"""`GET /v1/conversations/{id}/why` over real HTTP: who may ask, and the answer's shape."""

from __future__ import annotations

from tests.test_e2e import Server, event, make_server, make_token, offered, server, take

__all__ = ["make_server", "server"]  # the fixtures, used by name


def why_path(conv: str) -> str:
    return f"/v1/conversations/{conv}/why"


async def test_ops_and_supervisor_see_the_story_and_what_it_waits_for(server: Server) -> None:
    conv = await server.send_event(event(body="hello"))
    status, answer = await server.get(why_path(conv), server.ops_token())
    assert status == 200, answer
    assert answer["conversation"] == conv
    assert answer["state"] == "waiting"
    assert [d["kind"] for d in answer["decisions"]] == ["enqueued"]
    assert answer["waiting"]["eligible_now"] == ["TRN", "CCS", "PAM", "SAM"]  # nobody logged in
    assert answer["waiting"]["position"] == 1
    status, again = await server.get(why_path(conv), make_token("sup", "CCS", "supervisor"))
    assert status == 200 and again["decisions"] == answer["decisions"]
    assert "hello" not in str(answer)


async def test_an_agent_may_ask_about_a_conversation_it_holds_only(server: Server) -> None:
    c1 = await server.connect("c1", "CCS")
    conv = await server.send_event(event(body="question"))
    await take(c1, conv)
    status, answer = await server.get(why_path(conv), make_token("c1", "CCS"))
    assert status == 200, answer
    assert [d["kind"] for d in answer["decisions"]] == ["enqueued", "offered", "assigned"]
    assert answer["decisions"][1]["agent"] == "c1"
    assert answer["waiting"] is None
    status, refused = await server.get(why_path(conv), make_token("c2", "CCS"))
    assert status == 403 and refused["error"]["code"] == "forbidden"


async def test_a_ccs_agent_asking_about_a_csc_conversation_is_forbidden(server: Server) -> None:
    c1 = await server.connect("c1", "CCS")
    s1 = await server.connect("s1", "SAM", ready=False)
    conv = await server.send_event(event(body="special"))
    assigned = await take(c1, conv)
    customer = assigned["conversation"]["customer"]["id"]
    answer = await c1.request("customer.classify", customer=customer, group="CSC")
    assert answer["type"] == "ack"
    for who in (make_token("c1", "CCS"), make_token("sup", "CCS", "supervisor")):
        status, refused = await server.get(why_path(conv), who)
        assert status == 403, refused
        assert refused == {
            "error": {
                "code": "forbidden",
                "message": "this conversation is not yours to see",
                "field": None,
            }
        }
    await s1.available()
    await offered(s1, conv)
    status, story = await server.get(why_path(conv), server.ops_token())
    assert status == 200
    kinds = [d["kind"] for d in story["decisions"]]
    assert kinds == ["enqueued", "offered", "assigned", "reclassified", "requeued", "offered"]
    assert story["decisions"][-1]["agent"] == "s1"


async def test_refusals_without_a_token_or_for_an_unknown_conversation(server: Server) -> None:
    status, answer = await server.get(why_path("nope"))
    assert status == 401 and answer["error"]["code"] == "unauthorized"
    status, answer = await server.get(why_path("nope"), server.ops_token())
    assert status == 404 and answer["error"]["code"] == "not_found"
