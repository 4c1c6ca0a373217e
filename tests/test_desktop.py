"""`omniroute desktop` against a real `omniroute serve`: the README's first run, as processes."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import urllib.request
from typing import Any

from tests.test_cli import REPO, SECRET, clean_env, omniroute, running_server

WEBHOOK = "webhook-secret-of-at-least-32-bytes!!"
FRAME_DEADLINE_S = 15.0


def post_event(base: str, event: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(event).encode()
    signature = "sha256=" + hmac.new(WEBHOOK.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{base}/v1/events",
        data=body,
        headers={"Content-Type": "application/json", "X-Omniroute-Signature": signature},
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        assert reply.status == 202
        answer: dict[str, Any] = json.loads(reply.read())
        return answer


def test_a_desktop_sees_the_offer_for_a_posted_event_and_accepts_it() -> None:
    env = {"OMNIROUTE_JWT_SECRET": SECRET, "OMNIROUTE_WEBHOOK_SECRET": WEBHOOK}
    with running_server(env=env) as server:
        token = omniroute("token", "--agent", "a1", "--tier", "CCS", env=env).stdout.strip()
        url = server.base.replace("http://", "ws://") + "/v1/agent/ws"
        command = [sys.executable, "-m", "router.cli", "desktop", "--token", token, "--url", url]
        with subprocess.Popen(
            [*command, "--accept", "--limit", "6"],
            cwd=REPO,
            env=clean_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ) as desk:
            watchdog = threading.Timer(FRAME_DEADLINE_S, desk.kill)  # a hang fails, not blocks
            watchdog.start()
            try:
                assert desk.stdout is not None
                frames = []
                for line in desk.stdout:  # ends when the desktop exits after --limit frames
                    frames.append(json.loads(line))
                    if frames[-1] == {
                        "type": "presence",
                        "state": "available",
                        "ref": "p",
                        "seq": 2,
                    }:
                        answer = post_event(
                            server.base,
                            {"id": "e1", "type": "message", "channel": "chat",
                             "from": "visitor:7f3a", "body": "Hello"},
                        )  # fmt: skip
                        assert answer["accepted"] == 1
                assert desk.wait(timeout=FRAME_DEADLINE_S) == 0
            finally:
                watchdog.cancel()
                if desk.poll() is None:
                    desk.kill()
                    desk.wait(timeout=5)
    kinds = [(f["type"], f.get("state")) for f in frames]
    assert kinds == [
        ("welcome", None),
        ("presence", "away"),
        ("presence", "available"),
        ("offer", None),
        ("presence", "busy"),
        ("assigned", None),
    ]
    offer, assigned = frames[3], frames[5]
    assert offer["conversation"]["id"] == answer["conversations"][0]
    assert [i["body"] for i in offer["conversation"]["history"]] == ["Hello"]
    assert assigned["conversation"]["id"] == offer["conversation"]["id"]
    assert [f["seq"] for f in frames[1:]] == [1, 2, 3, 4, 5]


def test_a_desktop_with_a_bad_token_is_refused_in_one_line() -> None:
    env = {"OMNIROUTE_JWT_SECRET": SECRET}
    with running_server(env=env) as server:
        url = server.base.replace("http://", "ws://") + "/v1/agent/ws"
        result = omniroute("desktop", "--token", "not-a-token", "--url", url, env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == "omniroute desktop: refused with HTTP 401"
