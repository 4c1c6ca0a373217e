"""`GET /desktop` and `GET /ops`: the web agent desktop and the live ops dashboard.

Both pages are plain HTML, ES modules and one stylesheet in `router/web/static/`, read once
with `importlib.resources` and served from memory: no build step, no framework, nothing from
another origin. They speak the same endpoints as any other client — `/v1/agent/ws`,
`/v1/ops/stream`, `/v1/queues`, `/v1/agents` — with a token the page takes from its URL
fragment (`/desktop#token=JWT`; a fragment never reaches the server, its logs or a proxy's)
or from a sign-in form, and keeps in `sessionStorage`. On a WebSocket the token travels as an
offered subprotocol `bearer.<JWT>` (see `docs/protocol.md`), never in a URL.

Every answer is cacheable and revalidated: a strong `ETag` (a hash of the bytes) with
`Cache-Control: no-cache`, so a page loaded at the start of a shift costs one 304 per file on
the next load and a new release is picked up at once. Every answer also carries a
Content-Security-Policy that allows only the page's own origin (its WebSockets included).

`GET /v1/desktop/config` gives a signed-in page what the policy says a desktop needs to offer:
the `[wrapup] dispositions`, wrap-up seconds per channel, tiers and eligibility.

May import `router.auth`, `router.errors`, `router.settings` and `queues.policy`; only
`router.app` imports it.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import structlog
from aiohttp import web

from queues.policy import CHANNELS, TIERS
from router.auth import AuthError, verify_token
from router.errors import error_body, http_status
from router.settings import Settings

log = structlog.get_logger("omniroute.web")

PAGES: Final[Mapping[str, str]] = {"/desktop": "desktop.html", "/ops": "ops.html"}
ASSET_PREFIX: Final = "/web/"
CONFIG_PATH: Final = "/v1/desktop/config"
TYPES: Final[Mapping[str, str]] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# A Host header we are willing to repeat in the policy's connect-src (no spaces, quotes, ;).
_HOST = re.compile(r"[A-Za-z0-9.\-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,40}\.(html|js|css|svg)")


@dataclass(frozen=True)
class Asset:
    """One static file, held in memory with its type and strong validator."""

    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file of `router/web/static/`, by name."""
    assets: dict[str, Asset] = {}
    for entry in (importlib.resources.files(__name__) / "static").iterdir():
        name = entry.name
        suffix = name[name.rfind(".") :]
        if not entry.is_file() or not _NAME.fullmatch(name) or suffix not in TYPES:
            continue
        body = entry.read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:32]
        assets[name] = Asset(body, TYPES[suffix], f'"{digest}"')
    return assets


def content_security_policy(host: str | None) -> str:
    """Only this origin: scripts, styles, images, and the fetches and sockets of the page.

    `'self'` covers `ws:`/`wss:` of the same host in current browsers; the explicit entries
    are for older ones. A Host header that does not look like a host is simply left out."""
    sockets = ""
    if host and _HOST.fullmatch(host):
        sockets = f" ws://{host} wss://{host}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src 'self'{sockets}; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


def _headers(request: web.Request, asset: Asset) -> dict[str, str]:
    return {
        "Content-Type": asset.content_type,
        "ETag": asset.etag,
        "Cache-Control": "no-cache",  # cache, but ask each time: 304 while unchanged
        "Content-Security-Policy": content_security_policy(request.host),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


class WebPages:
    """The handlers of the two pages, their files and the desktop's configuration."""

    def __init__(self, settings: Settings, assets: Mapping[str, Asset] | None = None) -> None:
        self.settings = settings
        self.assets = dict(assets if assets is not None else load_assets())
        missing = {*PAGES.values()} - set(self.assets)
        if missing:
            raise RuntimeError(f"router/web/static lacks {', '.join(sorted(missing))}")

    def routes(self) -> list[web.RouteDef]:
        pages = [web.get(path, self.page) for path in PAGES]
        return [
            *pages,
            web.get(ASSET_PREFIX + "{name}", self.asset),
            web.get(CONFIG_PATH, self.config),
        ]

    def _answer(self, request: web.Request, asset: Asset) -> web.Response:
        headers = _headers(request, asset)
        wanted = request.headers.get("If-None-Match", "")
        if asset.etag in (tag.strip() for tag in wanted.split(",")):
            del headers["Content-Type"]
            return web.Response(status=304, headers=headers)
        return web.Response(body=asset.body, headers=headers)

    async def page(self, request: web.Request) -> web.Response:
        return self._answer(request, self.assets[PAGES[request.path]])

    async def asset(self, request: web.Request) -> web.Response:
        asset = self.assets.get(request.match_info["name"])
        if asset is None:
            raise web.HTTPNotFound()
        return self._answer(request, asset)

    async def config(self, request: web.Request) -> web.Response:
        """What the policy says a desktop offers; any valid token (agent, supervisor, ops)."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError("unauthorized", "Authorization: Bearer <token> is required")
            verify_token(token.strip(), self.settings.jwt_secret)
        except AuthError as exc:
            log.info("web.refused", path=request.path, code=exc.code)
            body = error_body(exc.code, exc.message, "token")
            return web.json_response(body, status=http_status(exc.code))
        policy = self.settings.policy
        body = {
            "dispositions": list(self.settings.dispositions),
            "wrapup_s": {c: policy.wrapup_s[c] for c in CHANNELS},
            "tiers": list(TIERS),
            "eligibility": {g: list(t) for g, t in policy.eligibility.items()},
            "reservation_timeout_s": policy.reservation_timeout_s,
        }
        return web.json_response(body, headers={"Cache-Control": "no-store"})


def add_web(app: web.Application, settings: Settings) -> WebPages:
    """Add `/desktop`, `/ops`, their files under `/web/` and `/v1/desktop/config`."""
    pages = WebPages(settings)
    app.add_routes(pages.routes())
    return pages


def page_weight(page: str, assets: Mapping[str, Asset] | None = None) -> int:
    """Bytes of a page with everything it loads (its HTML and every script, style and icon
    it names, followed through module imports) — what the 150 KB budget counts."""
    files = dict(assets if assets is not None else load_assets())
    seen: set[str] = set()
    todo = [PAGES[page]]
    while todo:
        name = todo.pop()
        if name in seen or name not in files:
            continue
        seen.add(name)
        text = files[name].body.decode()
        todo += re.findall(r"/web/([a-z0-9_.-]+)", text)
        todo += re.findall(r"from\s+[\"']\./([a-z0-9_.-]+)[\"']", text)
    return sum(len(files[n].body) for n in seen)
