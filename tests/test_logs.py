"""Logs: the redaction processor, JSON lines, and access logs without query strings."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from aiohttp import ClientSession, ClientTimeout, web
from aiohttp.test_utils import TestClient, TestServer

from router.logs import REDACTED, SENSITIVE_KEYS, AccessLogger, configure_logging, redact
from tests.support import logs_captured

CANARY = "CANARY-7f3a9c-do-not-log"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Logging configured into a buffer (JSON), and everything restored afterwards."""
    with logs_captured("info") as stream:
        yield stream


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


# -- redaction -------------------------------------------------------------------------------


def test_redact_replaces_every_sensitive_key() -> None:
    event: dict[str, Any] = {key: CANARY for key in SENSITIVE_KEYS}
    event.update(event="x", task="c1", agent="a1", count=3)
    out = redact(None, "info", dict(event))
    assert {k: v for k, v in out.items() if k in SENSITIVE_KEYS} == dict.fromkeys(
        SENSITIVE_KEYS, REDACTED
    )
    assert (out["event"], out["task"], out["agent"], out["count"]) == ("x", "c1", "a1", 3)


def test_redact_reaches_into_nested_values_and_spelling_variants() -> None:
    event = {
        "event": "x",
        "Authorization": f"Bearer {CANARY}",
        "first-name": CANARY,
        "frame": {"type": "message", "body": CANARY, "conversation": "c1"},
        "events": [{"id": "e1", "from": CANARY, "profile": {"city": CANARY}}],
    }
    out = redact(None, "info", event)
    assert CANARY not in json.dumps(out)
    assert out["frame"] == {"type": "message", "body": REDACTED, "conversation": "c1"}
    assert out["events"] == [{"id": "e1", "from": REDACTED, "profile": REDACTED}]


def test_json_lines_are_redacted_and_carry_level_and_time(captured: io.StringIO) -> None:
    log = structlog.get_logger("omniroute.test")
    log.info("ingest.refused", event_id="e1", code="invalid", body=CANARY, email=CANARY)
    [line] = lines(captured)
    assert line["event"] == "ingest.refused"
    assert line["event_id"] == "e1" and line["code"] == "invalid"
    assert line["body"] == REDACTED and line["email"] == REDACTED
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")
    assert CANARY not in captured.getvalue()


def test_stdlib_records_go_through_the_same_renderer(captured: io.StringIO) -> None:
    logging.getLogger("aiohttp.server").warning("something broke")
    [line] = lines(captured)
    assert line["event"] == "something broke"
    assert line["logger"] == "aiohttp.server"
    assert line["level"] == "warning"


def test_the_level_filters_and_a_bad_level_is_refused(captured: io.StringIO) -> None:
    structlog.get_logger("omniroute.test").debug("noise")
    assert lines(captured) == []
    with pytest.raises(ValueError, match="log level"):
        configure_logging(level="loud", stream=io.StringIO())


def test_console_output_when_not_json() -> None:
    stream = io.StringIO()
    try:
        configure_logging(json=False, stream=stream, cache=False)
        structlog.get_logger("omniroute.test").info("hello", agent="a1", token=CANARY)
    finally:
        structlog.reset_defaults()
    text = stream.getvalue()
    assert "hello" in text and "a1" in text
    assert CANARY not in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


# -- access log ------------------------------------------------------------------------------


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def app() -> web.Application:
    application = web.Application()
    application.router.add_get("/v1/ops/stream", ok)
    return application


async def test_access_log_has_path_and_status_but_no_query(captured: io.StringIO) -> None:
    """A refusal is logged at info without its query; a quick success only at debug."""
    runner = web.AppRunner(app(), access_log_class=AccessLogger)  # as run_app would make it
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with ClientSession(timeout=ClientTimeout(total=5)) as session:
            for path, status in (("/v1/ops/stream", 200), ("/v1/nothing", 404)):
                async with session.get(
                    f"http://127.0.0.1:{port}{path}?token={CANARY}",
                    headers={"Referer": f"/x?token={CANARY}"},
                ) as response:
                    assert response.status == status
    finally:
        await runner.cleanup()
    assert CANARY not in captured.getvalue()
    [line] = [e for e in lines(captured) if e["event"] == "http.request"]
    # a path no route serves is not logged as sent: it may be anything (an address, a name)
    assert (line["method"], line["path"], line["status"]) == ("GET", "[unmatched]", 404)
    assert isinstance(line["duration_ms"], float)


async def test_aiohttp_default_access_log_loses_its_query_too(captured: io.StringIO) -> None:
    """Defence in depth: should someone run aiohttp's own access logger, the filter strips it."""
    async with TestClient(TestServer(app(), host="127.0.0.1")) as client:
        response = await client.get(
            "/v1/ops/stream", params={"token": CANARY}, headers={"Referer": f"/x?token={CANARY}"}
        )
        assert response.status == 200
    text = captured.getvalue()
    assert "GET /v1/ops/stream HTTP/1.1" in text  # it did log the request line
    assert CANARY not in text


def test_an_id_field_keeps_a_minted_id_and_digests_free_text(captured: io.StringIO) -> None:
    log = structlog.get_logger("omniroute.test")
    log.info("probe", task="cv-12", res="R17", to_agent="anna", customer="anna@example.org")
    log.info("probe", task="+4915112345678", to_agent="anna", reservation="cv- x")
    first, second = [e for e in lines(captured) if e["event"] == "probe"]
    assert (first["task"], first["res"]) == ("cv-12", "R17")
    assert first["to_agent"].startswith("h:") and first["to_agent"] == second["to_agent"]
    assert first["customer"].startswith("h:") and second["task"].startswith("h:")
    assert second["reservation"].startswith("h:")
    assert "anna" not in captured.getvalue() and "4915112345678" not in captured.getvalue()
