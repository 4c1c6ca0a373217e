"""`omniroute desktop`: a minimal agent desktop in the terminal, for trying the server out.

It connects to `/v1/agent/ws` with a token, prints every frame as one JSON line, sets itself
`available`, and with `--accept` takes every offer it gets. It is a real client of the same
protocol as any desktop — handy for a first run and for watching what the server sends.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, TextIO

import aiohttp

from router.errors import CLOSE_DRAINING


async def run_desktop(
    url: str,
    token: str,
    *,
    accept: bool = False,
    available: bool = True,
    limit: int | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Print frames until the socket closes (or `limit` frames were printed); exit code."""
    headers = {"Authorization": f"Bearer {token}"}
    printed = 0
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers=headers, protocols=("omniroute.v1.json",)) as ws,
    ):
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            frame: dict[str, Any] = json.loads(message.data)
            print(json.dumps(frame, ensure_ascii=False), file=out, flush=True)
            printed += 1
            if frame.get("type") == "welcome" and available:
                await ws.send_json({"type": "presence.set", "state": "available", "ref": "p"})
            elif frame.get("type") == "offer" and accept:
                await ws.send_json({"type": "offer.accept", "reservation": frame["reservation"]})
            if limit is not None and printed >= limit:
                await ws.close()
                return 0
        code = ws.close_code
    if code not in (None, 1000, CLOSE_DRAINING):
        print(f"omniroute desktop: closed with {code}", file=sys.stderr)
        return 1
    return 0


def main_sync(url: str, token: str, accept: bool, limit: int | None) -> int:
    """Run until Ctrl-C or the socket closes."""
    try:
        return asyncio.run(run_desktop(url, token, accept=accept, limit=limit))
    except KeyboardInterrupt:
        return 0
    except aiohttp.WSServerHandshakeError as exc:
        print(f"omniroute desktop: refused with HTTP {exc.status}", file=sys.stderr)
        return 1
    except aiohttp.ClientError as exc:
        print(f"omniroute desktop: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
