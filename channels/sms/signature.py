"""Twilio's webhook signature: what `X-Twilio-Signature` is computed over, and its check.

Signatures are Twilio's legacy scheme, as `twilio.request_validator.RequestValidator` computes
them: base64(HMAC-SHA1(auth token, URL + every POST parameter name followed by its value,
names sorted, a repeated name's distinct values sorted)). The URL is the one Twilio requested,
so behind a proxy it is built from `[server] public_url`; like the official validator we accept
it with the scheme's default port written out or left off.

Standard library only: the pairs come from `channels.sms.form.form_pairs`, the URL from the
router, which refuses the request when the check fails.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit, urlunsplit

SIGNATURE_HEADER: Final = "X-Twilio-Signature"


def compute_signature(token: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """Twilio's X-Twilio-Signature of a POST to `url` with form `params` (see module doc)."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    data = url + "".join(name + value for name in sorted(values) for value in sorted(values[name]))
    mac = hmac.new(token.encode(), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def url_variants(url: str) -> list[str]:
    """`url` as given, with the scheme's default port left off, and with it written out.

    Twilio is not consistent about the port in what it signs; its own validator tries both.
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return [url]
    bare = parts.netloc if port is None else parts.netloc[: parts.netloc.rfind(":")]
    default = 443 if parts.scheme == "https" else 80
    out = [url]
    for netloc in (bare, f"{bare}:{port if port is not None else default}"):
        candidate = urlunsplit(parts._replace(netloc=netloc))
        if candidate not in out:
            out.append(candidate)
    return out


def signature_ok(
    token: str, url: str, params: Sequence[tuple[str, str]], signature: str | None
) -> bool:
    """Constant-time check of an X-Twilio-Signature header against `url` and `params`."""
    if not token or not signature:
        return False
    given = signature.strip().encode()
    ok = False
    for candidate in url_variants(url):
        expected = compute_signature(token, candidate, params).encode()
        ok |= hmac.compare_digest(expected, given)
    return ok
