"""Request bodies through the real app: signed as received, decoded after, refused with a code.

The server is `create_app` on a real socket (aiohttp's automatic decompression is off there),
and requests are raw bytes with hand-made headers, so the client never encodes for us.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import zlib
from typing import Any

import pytest

from router.body import BodyRefused, decode
from router.ingest import MAX_BYTES
from tests.test_e2e import Server, event, servers, sign

VOICE = "/v1/channels/voice/events"


@pytest.fixture
async def server() -> Any:
    async with servers() as factory:
        yield await factory()


async def post(
    server: Server,
    raw: bytes,
    *,
    encoding: str | None,
    signature: str | None = None,
    path: str = "/v1/events",
    content_type: str = "application/json",
) -> tuple[int, str, Any]:
    headers = {"Content-Type": content_type, "X-Omniroute-Signature": signature or sign(raw)}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    async with server.http.post(
        server.base + path, data=io.BytesIO(raw), headers=headers, compress=None
    ) as resp:
        text = await resp.text()
        return (
            resp.status,
            resp.content_type,
            json.loads(text) if "json" in resp.content_type else text,
        )


async def test_a_signed_gzip_body_is_accepted_and_stored(server: Server) -> None:
    ev = event(body="zipped")
    raw = gzip.compress(json.dumps(ev).encode())
    status, _, answer = await post(server, raw, encoding="gzip")
    assert (status, answer["accepted"]) == (202, 1)
    deflated = zlib.compress(json.dumps(event(body="deflated")).encode())
    status, _, answer = await post(server, deflated, encoding="deflate")
    assert (status, answer["accepted"]) == (202, 1)


async def test_the_signature_is_over_the_bytes_received_not_the_decoded_body(
    server: Server,
) -> None:
    plain = json.dumps(event()).encode()
    raw = gzip.compress(plain)
    status, _, answer = await post(server, raw, encoding="gzip", signature=sign(plain))
    assert (status, answer["error"]["code"]) == (401, "unauthorized")


async def test_an_unsigned_bomb_is_refused_before_it_is_inflated(server: Server) -> None:
    # 64 MiB of zeros in ~64 KiB: inflating it would cost time and memory; a bad signature
    # must be answered from the compressed bytes alone (the answer is 401, not 413)
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    assert len(bomb) < MAX_BYTES
    status, _, answer = await post(server, bomb, encoding="gzip", signature="sha256=" + "0" * 64)
    assert (status, answer["error"]["code"]) == (401, "unauthorized")
    # signed, it is inflated only up to the limit: 413
    status, _, answer = await post(server, bomb, encoding="gzip")
    assert (status, answer["error"]["code"]) == (413, "too_large")


@pytest.mark.parametrize(
    ("raw", "encoding", "status"),
    [
        (b"\x1f\x8b\x08\x00garbage-that-is-not-gzip", "gzip", 400),
        (gzip.compress(b'{"id": "x"}')[:-6], "gzip", 400),  # truncated stream
        (gzip.compress(b"{}") + b"trailing", "gzip", 400),
        (b"not deflate at all", "deflate", 400),
        (json.dumps({"id": "e"}).encode(), "br", 415),
        (json.dumps({"id": "e"}).encode(), "gzip, gzip", 415),
        (gzip.compress(b"{not json"), "gzip", 400),
    ],
)
async def test_a_malformed_body_is_a_json_error_never_a_plain_500(
    server: Server, raw: bytes, encoding: str, status: int
) -> None:
    for path in ("/v1/events", VOICE):
        got, content_type, answer = await post(server, raw, encoding=encoding, path=path)
        assert (got, content_type) == (status, "application/json"), (path, answer)
        assert answer["error"]["code"] == "invalid"


async def test_the_voice_webhook_checks_the_compressed_bytes_too(server: Server) -> None:
    call = {
        "id": "pbx-1",
        "type": "call.offered",
        "call_id": "c-1",
        "from": "+4915112345678",
        "to": "+4930123456",
    }
    plain = json.dumps(call).encode()
    raw = gzip.compress(plain)
    status, _, _ = await post(server, raw, encoding="gzip", signature=sign(plain), path=VOICE)
    assert status == 401
    status, _, answer = await post(server, raw, encoding="gzip", path=VOICE)
    assert (status, answer["accepted"]) == (202, 1)


async def test_a_compressed_twilio_webhook_is_refused_unread() -> None:
    async with servers() as factory:
        server: Server = await factory(
            sms_auth_token="tok", server_public_url="https://acd.example.org"
        )
        form = b"From=%2B4915112345678&Body=hi&MessageSid=SM1"
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Encoding": "gzip",
            "X-Twilio-Signature": "x",
        }
        url = server.base + "/v1/channels/sms/twilio"
        async with server.http.post(url, data=gzip.compress(form), headers=headers) as resp:
            assert resp.status == 415
            assert (await resp.json())["error"]["code"] == "invalid"


async def test_a_body_that_trickles_in_is_cut_off_with_408() -> None:
    async with servers() as factory:
        server: Server = await factory(connections_body_timeout_s=0.5)
        reader, writer = await asyncio.open_connection(*server.base[7:].split(":"))
        writer.write(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\nX-Omniroute-Signature: sha256=00\r\n\r\n{"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.read(), 5)  # the server answers and closes
        writer.close()
        assert head.startswith(b"HTTP/1.1 408"), head[:80]
        assert b'"timeout"' in head


def test_decode_never_yields_more_than_the_limit() -> None:
    with pytest.raises(BodyRefused) as refused:
        decode(gzip.compress(b"a" * 10_001), "gzip", 10_000)
    assert refused.value.reason == "too_large"
    assert decode(gzip.compress(b"a" * 10_000), "x-gzip", 10_000) == b"a" * 10_000
    assert decode(b"plain", "identity", 5) == b"plain"
