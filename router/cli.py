"""The `omniroute` command: serve | token | check-config | desktop | export | replay.

A bad setting or argument ends the command with one line on stderr and exit code 2, never a
traceback. Logs are structlog: JSON lines when stderr is not a terminal, readable when it is.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import jwt
import structlog

from queues.args import MAX_ID
from queues.errors import RoutingError
from queues.policy import TIERS
from queues.skills import check_skills
from router.settings import Override, Settings, describe_engine, load_settings
from router.settings_keys import SettingsError

USAGE_ERROR = 2
ROLES = ("agent", "supervisor", "ops")
DEFAULT_TTL_S = 8 * 3600
MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash

log = structlog.get_logger("omniroute.cli")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {' '.join(message.split())}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of seconds, got {text!r}"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _identifier(text: str) -> str:
    if not text or len(text) > MAX_ID or text != text.strip():
        raise argparse.ArgumentTypeError(
            f"must be 1-{MAX_ID} characters without surrounding spaces, got {text!r}"
        )
    return text


def _skills_arg(text: str) -> list[str] | dict[str, int]:
    """`de:4,fr` → {"de": 4, "fr": 1}; `de,fr` → ["de", "fr"] (the claim as DESIGN.md has it)."""
    pairs: dict[str, int] = {}
    levelled = False
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, colon, level = item.partition(":")
        levelled = levelled or bool(colon)
        if colon and not level.isdigit():
            raise argparse.ArgumentTypeError(f"skill {name}: the level must be 1-5, got {level!r}")
        pairs[name] = int(level) if colon else 1
    try:
        check_skills(pairs)
    except RoutingError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return pairs if levelled else list(pairs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="omniroute", description="Real-time omnichannel routing server.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_help = "TOML file read on top of the shipped defaults (default: $OMNIROUTE_CONFIG)"

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="address to listen on (overrides [server] host)")
    serve.add_argument("--port", help="TCP port to listen on (overrides [server] port)")
    serve.add_argument("--redis", metavar="URL", help="redis://… for the Redis engine, or memory")
    serve.add_argument("--config", metavar="FILE", help=config_help)
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        metavar="N",
        help="N processes on one port (SO_REUSEPORT), sharing the Redis engine (default 1)",
    )
    serve.add_argument("--worker-of", type=int, default=None, help=argparse.SUPPRESS)

    token = commands.add_parser("token", help="print a signed agent or ops token (JWT HS256)")
    token.add_argument("--agent", required=True, type=_identifier, help="agent id (claim sub)")
    token.add_argument("--tier", required=True, choices=TIERS)
    token.add_argument("--name", type=_identifier, help="display name (default: the agent id)")
    token.add_argument("--role", choices=ROLES, default="agent")
    token.add_argument(
        "--ttl", type=_positive_int, default=DEFAULT_TTL_S, metavar="SECONDS", help="default 8 h"
    )
    token.add_argument(
        "--skills",
        type=_skills_arg,
        help="comma-separated skills, each NAME or NAME:LEVEL (1-5), e.g. de:4,fr",
    )
    token.add_argument("--endpoint", help="the agent's phone endpoint for voice (claim endpoint)")
    token.add_argument("--config", metavar="FILE", help=config_help)

    check = commands.add_parser("check-config", help="validate a settings file and summarise it")
    check.add_argument("file", metavar="FILE")

    export = commands.add_parser("export", help="write a routing recording to a file")
    export.add_argument(
        "--from", dest="source", required=True, metavar="REDIS_URL|URL",
        help="a Redis engine, or a node's http(s):// origin (GET /v1/recording)",
    )  # fmt: skip
    export.add_argument("--token", help="a token with role ops, for an http(s) source")
    export.add_argument("--out", required=True, metavar="FILE", help="JSON lines (docs/explain.md)")
    export.add_argument("--config", metavar="FILE", help=config_help + "; names the domain")

    replay = commands.add_parser("replay", help="replay a recording under another policy")
    replay.add_argument("--from", dest="source", required=True, metavar="REDIS_URL|FILE")
    replay.add_argument("--policy", required=True, metavar="FILE", help="the new policy (TOML)")
    replay.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    replay.add_argument("--png", metavar="OUT", help="also draw it (needs matplotlib)")
    replay.add_argument(
        "--config", metavar="FILE", help=config_help + "; the recorded policy for a Redis source"
    )

    desk = commands.add_parser("desktop", help="a terminal agent desktop: print every frame")
    desk.add_argument("--token", required=True, help="the agent's token (omniroute token …)")
    desk.add_argument(
        "--url", default="ws://127.0.0.1:8080/v1/agent/ws", help="the agent socket's URL"
    )
    desk.add_argument("--accept", action="store_true", help="accept every offer")
    desk.add_argument("--limit", type=_positive_int, help="stop after this many frames")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(raw)
    args.raw_argv = raw
    env = os.environ
    try:
        if args.command == "serve":
            return _serve(args, env)
        if args.command == "token":
            return _token(args, env)
        if args.command in ("export", "replay"):
            from router.cli_replay import export, replay

            return (export if args.command == "export" else replay)(args, env)
        if args.command == "desktop":
            from router.desktop import main_sync

            return main_sync(args.url, args.token, args.accept, args.limit)
        return _check_config(args.file, env)
    except SettingsError as exc:
        print(f"omniroute {args.command}: {exc}", file=sys.stderr)
        return USAGE_ERROR


# -- serve ------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    flags = [
        Override("--host", "server", "host", args.host),
        Override("--port", "server", "port", args.port),
        Override("--redis", "redis", "url", args.redis),
    ]
    path = args.config or env.get("OMNIROUTE_CONFIG") or None
    settings = load_settings(path, env, overrides=[f for f in flags if f.text is not None])

    from router.app import create_app, new_event_loop, serve
    from router.engines import create_engines
    from router.logs import configure_logging

    configure_logging()  # JSON lines unless stderr is a terminal; ids only, never content
    try:
        engine, store = create_engines(settings)
    except RoutingError as exc:
        print(f"omniroute serve: {exc.field or 'engine'}: {exc.message}", file=sys.stderr)
        return USAGE_ERROR
    if args.workers > 1 and settings.redis.engine == "memory":
        print(
            "omniroute serve: --workers: the memory engine keeps its state in one process; "
            "give more than one worker a Redis engine (--redis redis://…)",
            file=sys.stderr,
        )
        return USAGE_ERROR
    host, port = settings.server.host, settings.server.port

    def first_line(**more: Any) -> None:  # names the engine, the address and the loop
        log.info(
            "omniroute.serve",
            engine=describe_engine(settings),
            listen=f"http://{_host_port(host, port)}",
            domain=settings.domain,
            config=settings.source or "defaults",
            **more,
        )

    if args.workers > 1:
        from router.workers import supervise

        first_line(workers=args.workers)
        return supervise(args.workers, args.raw_argv)
    worker = args.worker_of
    if worker is not None and settings.server.node:  # one consumer name per worker
        server = dataclasses.replace(settings.server, node=f"{settings.server.node}-{worker}")
        settings = dataclasses.replace(settings, server=server)
    loop, loop_name = new_event_loop()
    first_line(
        loop=loop_name, **({"worker": worker, "pid": os.getpid()} if worker is not None else {})
    )
    if settings.jwt_secret and len(settings.jwt_secret.encode()) < MIN_SECRET_BYTES:
        log.warning("settings.short_secret", key="[jwt] secret", min_bytes=MIN_SECRET_BYTES)
    try:
        serve(create_app(settings, engine, store), host, port, loop, reuse_port=worker is not None)
    except OSError as exc:  # the port is taken, the address is not ours, …
        log.error("omniroute.listen_failed", listen=_host_port(host, port), error=str(exc))
        return 1
    log.info("omniroute.stopped")
    return 0


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- token ------------------------------------------------------------------------------------


def _token(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    path = args.config or env.get("OMNIROUTE_CONFIG") or None
    settings = load_settings(path, env)
    if not settings.jwt_secret:
        print(
            "omniroute token: no signing secret: set OMNIROUTE_JWT_SECRET (or [jwt] secret)",
            file=sys.stderr,
        )
        return USAGE_ERROR
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": args.agent,
        "tier": args.tier,
        "name": args.name or args.agent,
        "role": args.role,
        "iat": now,
        "exp": now + args.ttl,
    }
    if args.skills is not None:
        claims["skills"] = args.skills
    if args.endpoint:
        claims["endpoint"] = args.endpoint
    if len(settings.jwt_secret.encode()) < MIN_SECRET_BYTES:
        print(
            f"omniroute token: warning: the secret is shorter than {MIN_SECRET_BYTES} bytes",
            file=sys.stderr,
        )
    with warnings.catch_warnings():  # PyJWT's own key-length warning, said above in one line
        warnings.simplefilter("ignore", UserWarning)
        print(jwt.encode(claims, settings.jwt_secret, algorithm="HS256"))
    return 0


# -- check-config -----------------------------------------------------------------------------


def _check_config(path: str, env: Mapping[str, str]) -> int:
    settings = load_settings(path, env)
    print(f"ok: {path}")
    for line in summary(settings):
        print(f"  {line}")
    return 0


def summary(settings: Settings) -> list[str]:
    """What the server would run with, in a few lines; secrets only as set / not set."""
    policy = settings.policy

    def secs(value: float) -> str:
        return f"{value:g} s"

    def is_set(secret: str) -> str:
        return "set" if secret else "not set"

    eligibility = "; ".join(f"{g} {','.join(t)}" for g, t in policy.eligibility.items())
    capacity = ", ".join(f"{c} {n}" for c, n in policy.capacity.items())
    return [
        f"engine: {describe_engine(settings)}",
        f"listen: {_host_port(settings.server.host, settings.server.port)}",
        f"domain: {settings.domain}",
        f"reservation timeout: {secs(policy.reservation_timeout_s)}",
        f"presence ttl: {secs(policy.presence_ttl_s)}",
        f"eligibility: {eligibility}",
        f"capacity: {capacity}",
        f"priority rules: {len(policy.priority_rules)}",
        f"secrets: jwt {is_set(settings.jwt_secret)}, webhook {is_set(settings.webhook_secret)}",
    ]


if __name__ == "__main__":
    sys.exit(main())
