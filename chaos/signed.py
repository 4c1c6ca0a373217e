"""Signed adapter posts the harness does not make: Twilio's form webhooks (signed like Twilio
signs them, for `[server] public_url`) and an `X-Omniroute-Signature` over raw bytes.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

import aiohttp
import yarl

from channels.sms.signature import compute_signature
from chaos.harness import WEBHOOK_SECRET, Node
from chaos.provider import SMS_ENV

PUBLIC = "https://acd.example.org"
SMS_PATH = "/v1/channels/sms/twilio"


def twilio_post(url: str, form: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The encoded form and its headers, signed by `SMS_ENV`'s auth token for `url`."""
    token = SMS_ENV["OMNIROUTE_SMS_AUTH_TOKEN"]
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": compute_signature(token, url, sorted(form.items())),
    }
    return urlencode(form), headers


async def twilio_form(
    http: aiohttp.ClientSession, node: Node, path: str, form: dict[str, str]
) -> int:
    body, headers = twilio_post(PUBLIC + path, form)
    url = yarl.URL(node.base + path, encoded=True)  # as signed: not re-quoted
    async with http.post(url, data=body, headers=headers) as response:
        return response.status


def sign_bytes(body: bytes) -> str:
    """`X-Omniroute-Signature` over exactly these bytes."""
    return "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
