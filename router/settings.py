"""Settings, read once at start: the shipped `config/omniroute.toml`, the user's file, then env.

Three layers, later ones win: the shipped file (every key, with its default), the user's TOML
file (any subset of keys), then `OMNIROUTE_SECTION_KEY` environment variables (and, above them,
command-line flags). Each value is checked where it is read, so a problem is reported with the
key *as the user wrote it* — `[reservation] timeout_s` or `OMNIROUTE_RESERVATION_TIMEOUT_S` —
in one line, as a `SettingsError`. Nothing here logs or prints; the CLI decides that.

Lists and `[[priority.rules]]` from a file replace the shipped ones whole; priority rules come
only from files (a table of rows does not fit in one variable).

This module holds the frozen dataclasses, the layering and `load_settings`, the public entry.
What each key must be, and its error, is `router/settings_keys.py`; the routing `Policy` built
from the values is `router/settings_policy.py`. Both sit below this one and never import it.
"""

from __future__ import annotations

import difflib
import importlib.resources
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from queues.policy import GROUPS, Policy
from queues.runtime import engine_kind
from router.guidance import GuidanceRule, guidance_rules
from router.settings_keys import (
    ENV_KEYS,
    ENV_ONLY,
    ENV_PREFIX,
    ENV_TOOLING_PREFIXES,
    KEY_NOUN,
    SCHEMA,
    SettingsError,
    Value,
    checked,
    listing,
    sections,
    show,
)
from router.settings_policy import build_policy, priority_rules, skill_tables


@dataclass(frozen=True)
class ServerSettings:
    """`[server]`: the HTTP and WebSocket listener, the origins it lets in, this node's name."""

    host: str
    port: int
    public_url: str
    allowed_origins: tuple[str, ...] = ()
    node: str = ""
    max_body_bytes: int = 1 << 20


@dataclass(frozen=True)
class EventSettings:
    """`[events]`: the event log and the outgoing jobs — takeover of stuck entries, dedupe, the
    backlog bound, leases."""

    claim_idle_s: float = 30.0
    dedupe_s: float = 86_400.0
    max_backlog_s: float = 10.0
    lease_s: float = 2.0  # a node silent this long is taken for dead (router.liveness)


@dataclass(frozen=True)
class AgentSettings:
    """`[agent]`: how long a vanished desktop keeps its work; the history an offer carries."""

    offline_grace_s: float = 10.0
    release_after_s: float = 120.0
    history_limit: int = 50


@dataclass(frozen=True)
class RedisSettings:
    """`[redis]`: the engine — embedded in memory, or a Redis (or Sentinel) URL."""

    url: str

    @property
    def engine(self) -> str:
        """`memory` or `redis`: which engines `router.engines.create_engines` builds from
        `url` (`queues.runtime.engine_kind`; `validate` refused any other URL)."""
        return "memory" if engine_kind(self.url) == "memory" else "redis"


@dataclass(frozen=True)
class SmsSettings:
    """`[sms]`: the Twilio account that signs the SMS webhooks and sends the replies;
    `default_region` also reads national numbers of calls and campaign contacts."""

    auth_token: str = field(repr=False)
    account_sid: str
    from_number: str
    api_base_url: str
    default_region: str


@dataclass(frozen=True)
class EmailSettings:
    """`[email]`: the inbound SMTP listener and the relay that replies go out through."""

    smtp_host: str
    smtp_port: int
    addresses: tuple[str, ...]
    max_bytes: int
    relay_host: str
    relay_port: int
    from_address: str


@dataclass(frozen=True)
class VoiceSettings:
    """`[voice]`: the PBX that `connect` (and a campaign's `dial`) commands are POSTed to."""

    pbx_url: str


@dataclass(frozen=True)
class CampaignSettings:
    """`[campaigns]`: the campaign loop (`router.campaigns`, docs/campaigns.md)."""

    tick_s: float = 1.0  # how often a node moves due contacts into the engine
    max_queued: int = 20  # a campaign's contacts in line at once, unless it says
    batch: int = 50  # contacts one node claims per campaign and tick
    recover_s: float = 10.0  # a claimed contact with no task this long is sent again


@dataclass(frozen=True)
class ConnectionSettings:
    """`[connections]`: how long and how many (slowloris, descriptor exhaustion); see
    `router/connections.py` and docs/operations.md, "Connections"."""

    idle_timeout_s: float = 10.0  # no complete request head this long after opening/answering
    body_timeout_s: float = 10.0  # a request body must have arrived this long after its head
    max_connections: int = 0  # open connections per process; 0 = from the open-files limit


@dataclass(frozen=True)
class Settings:
    """Everything the server reads at start. Secrets are left out of `repr`."""

    server: ServerSettings
    redis: RedisSettings
    jwt_secret: str = field(repr=False)
    webhook_secret: str = field(repr=False)
    domain: str
    policy: Policy
    sms: SmsSettings
    email: EmailSettings
    voice: VoiceSettings
    agent: AgentSettings = field(default_factory=AgentSettings)
    events: EventSettings = field(default_factory=EventSettings)
    connections: ConnectionSettings = field(default_factory=ConnectionSettings)
    campaigns: CampaignSettings = field(default_factory=CampaignSettings)
    visitor_secret: str = field(default="", repr=False)  # OMNIROUTE_VISITOR_SECRET
    dispositions: tuple[str, ...] = ("solved",)  # [wrapup] dispositions, offered at Complete
    source: str | None = None  # the user's file, if one was read
    guidance: tuple[GuidanceRule, ...] = ()  # [[guidance.rules]]: alerts and suggestions


@dataclass(frozen=True)
class Override:
    """A value from the command line (`--port 9000`), applied above the environment."""

    label: str
    section: str
    key: str
    text: str


# -- reading and layering ---------------------------------------------------------------------


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        first = (str(exc).splitlines() or ["parse error"])[0]
        raise SettingsError(f"{path}: not valid TOML: {first}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{path}: not valid TOML: the file is not UTF-8") from None


def _read_shipped() -> dict[str, Any]:
    text = importlib.resources.files("config").joinpath("omniroute.toml").read_text("utf-8")
    return tomllib.loads(text)


def _add_file(
    doc: Mapping[str, Any], origin: str, values: dict[tuple[str, str], Value]
) -> dict[str, Any]:
    """Check every key of one TOML document into `values`; return the tables it gives that
    are read from files only (`FILE_ONLY`): each replaces the shipped one whole."""
    found: dict[str, Any] = {}
    for section, table in doc.items():
        if section == "priority":
            found["priority.rules"] = priority_rules(table)
            continue
        if section == "guidance":
            found["guidance.rules"] = guidance_rules(table)
            continue
        if section == "skills" and isinstance(table, dict):
            table, extras = skill_tables(table)
            found.update(extras)
        if section == "levels" and isinstance(table, dict):
            tables = [(f"levels.{group}", sub) for group, sub in table.items()]
        else:
            tables = [(section, table)]
        for name, sub in tables:
            if name not in SCHEMA:
                if name.startswith("levels."):
                    raise SettingsError(
                        f"[{name}]: unknown client group (known: {listing(GROUPS)})"
                    )
                if not isinstance(sub, dict):
                    raise SettingsError(f"{name}: unknown top-level key; keys go in a [section]")
                raise SettingsError(f"[{name}]: unknown section (known: {listing(sections())})")
            if not isinstance(sub, dict):
                raise SettingsError(f"[{name}]: must be a table, got {show(sub)}")
            for key, raw in sub.items():
                label = f"[{name}] {key}"
                spec = SCHEMA[name].get(key)
                if spec is None:
                    noun = KEY_NOUN.get(name, "key")
                    raise SettingsError(f"{label}: unknown {noun} (known: {listing(SCHEMA[name])})")
                values[(name, key)] = Value(checked(spec, raw, label, False), label, origin)
    return found


def _add_env(env: Mapping[str, str], values: dict[tuple[str, str], Value]) -> None:
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in ENV_ONLY:
            continue
        if name.startswith(ENV_TOOLING_PREFIXES):
            continue
        target = ENV_KEYS.get(name)
        if target is None:
            if name.startswith(f"{ENV_PREFIX}PRIORITY_"):
                raise SettingsError(f"{name}: priority rules are read from config files only")
            if name.startswith(f"{ENV_PREFIX}GUIDANCE_"):
                raise SettingsError(f"{name}: guidance rules are read from config files only")
            if name.startswith((f"{ENV_PREFIX}SKILLS_RULES", f"{ENV_PREFIX}SKILLS_WIDEN_BY")):
                raise SettingsError(
                    f"{name}: skill rules and widen_by are read from config files only"
                )
            close = difflib.get_close_matches(name, [*ENV_KEYS, *ENV_ONLY], n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise SettingsError(f"{name}: no such setting{hint}")
        spec = SCHEMA[target[0]][target[1]]
        values[target] = Value(checked(spec, env[name], name, True), name, "env")


def load_settings(
    path: str | None, env: Mapping[str, str], *, overrides: Iterable[Override] = ()
) -> Settings:
    """Read the shipped defaults, `path` on top (if given), then `env` and `overrides`; validate.

    Raises `SettingsError` (one line, naming the key as it was given) on the first problem.
    """
    values: dict[tuple[str, str], Value] = {}
    tables = _add_file(_read_shipped(), "default", values)
    if path is not None:
        tables.update(_add_file(_read_file(path), "file", values))
    _add_env(env, values)
    for item in overrides:
        spec = SCHEMA[item.section][item.key]
        value = checked(spec, item.text, item.label, True)
        values[(item.section, item.key)] = Value(value, item.label, "cli")
    missing = [
        f"[{s}] {k}"
        for s, keys in SCHEMA.items()
        for k in keys
        if (s, k) not in values and not s.startswith("levels.")
    ]
    if missing:  # only if the shipped file itself lost a key
        raise SettingsError(f"{missing[0]}: missing from the shipped config/omniroute.toml")
    settings = _build(values, tables, path)
    # The chat widget's token key: environment only, like every secret should be.
    return replace(settings, visitor_secret=env.get("OMNIROUTE_VISITOR_SECRET", ""))


# -- building ---------------------------------------------------------------------------------


def _build(
    values: Mapping[tuple[str, str], Value], tables: Mapping[str, Any], path: str | None
) -> Settings:
    def get(section: str, key: str) -> Any:
        return values[(section, key)].value

    return Settings(
        server=ServerSettings(
            host=get("server", "host"),
            port=get("server", "port"),
            public_url=get("server", "public_url").rstrip("/"),
            allowed_origins=tuple(get("server", "allowed_origins")),
            node=get("server", "node"),
            max_body_bytes=get("server", "max_body_bytes"),
        ),
        events=EventSettings(
            claim_idle_s=get("events", "claim_idle_s"),
            dedupe_s=get("events", "dedupe_s"),
            max_backlog_s=get("events", "max_backlog_s"),
            lease_s=get("events", "lease_s"),
        ),
        agent=AgentSettings(
            offline_grace_s=get("agent", "offline_grace_s"),
            release_after_s=get("agent", "release_after_s"),
            history_limit=get("agent", "history_limit"),
        ),
        connections=ConnectionSettings(**{k: get("connections", k) for k in SCHEMA["connections"]}),
        campaigns=CampaignSettings(**{k: get("campaigns", k) for k in SCHEMA["campaigns"]}),
        redis=RedisSettings(url=get("redis", "url")),
        jwt_secret=get("jwt", "secret"),
        webhook_secret=get("webhook", "secret"),
        domain=get("routing", "domain"),
        policy=build_policy(values, tables),
        sms=SmsSettings(**{k: get("sms", k) for k in SCHEMA["sms"]}),
        email=EmailSettings(**{k: get("email", k) for k in SCHEMA["email"]}),
        voice=VoiceSettings(pbx_url=get("voice", "pbx_url")),
        dispositions=tuple(get("wrapup", "dispositions")),
        source=path,
        guidance=tables.get("guidance.rules", ()),
    )


# -- showing ----------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """`url` with any password (in the authority or a `password=` query field) masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        host = netloc.rpartition("@")[2]
        netloc = f"{parts.username or ''}:***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = [(k, "***" if k.lower() == "password" else v) for k, v in pairs]
        query = urlencode(masked, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def describe_engine(settings: Settings) -> str:
    """The engine in one phrase for logs and `check-config`, without secrets."""
    if settings.redis.engine == "memory":
        return "memory (embedded, nothing persisted)"
    return f"redis {redact_url(settings.redis.url)}"
