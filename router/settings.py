"""Settings, read once at start: the shipped `config/omniroute.toml`, the user's file, then env.

Three layers, later ones win: the shipped file (every key, with its default), the user's TOML
file (any subset of keys), then `OMNIROUTE_SECTION_KEY` environment variables (and, above them,
command-line flags). Each value is checked where it is read, so a problem is reported with the
key *as the user wrote it* — `[reservation] timeout_s` or `OMNIROUTE_RESERVATION_TIMEOUT_S` —
in one line, as a `SettingsError`. Nothing here logs or prints; the CLI decides that.

Lists and `[[priority.rules]]` from a file replace the shipped ones whole; priority rules come
only from files (a table of rows does not fit in one variable).
"""

from __future__ import annotations

import difflib
import importlib.resources
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from queues.clients import is_sentinel, parse_sentinel_url
from queues.policy import CHANNELS, GROUPS, OPERATORS, PRIORITY_BOUND, TIERS, Policy, PriorityRule

ENV_PREFIX = "OMNIROUTE_"
# Variables read directly by the parts that need them, not settings from the TOML file.
ENV_ONLY = frozenset({"OMNIROUTE_CONFIG", "OMNIROUTE_VISITOR_SECRET"})
# Namespaces for tooling (test fixtures, the benchmark); never read as settings.
ENV_TOOLING_PREFIXES = ("OMNIROUTE_TEST_", "OMNIROUTE_BENCH_")


class SettingsError(Exception):
    """Raised when a setting is unknown, missing or invalid; the message is one line naming it."""


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    public_url: str
    allowed_origins: tuple[str, ...] = ()
    node: str = ""
    max_body_bytes: int = 1 << 20


@dataclass(frozen=True)
class EventSettings:
    claim_idle_s: float = 30.0
    dedupe_s: float = 86_400.0
    max_backlog_s: float = 10.0
    lease_s: float = 2.0  # a node silent this long is taken for dead (router.liveness)


@dataclass(frozen=True)
class AgentSettings:
    offline_grace_s: float = 10.0
    release_after_s: float = 120.0
    history_limit: int = 50


@dataclass(frozen=True)
class RedisSettings:
    url: str

    @property
    def engine(self) -> str:
        """`memory` or `redis`: which engine `queues.create_engine` builds from `url`."""
        return "memory" if self.url in ("", "memory") else "redis"


@dataclass(frozen=True)
class SmsSettings:
    auth_token: str = field(repr=False)
    account_sid: str
    from_number: str
    api_base_url: str
    default_region: str


@dataclass(frozen=True)
class EmailSettings:
    smtp_host: str
    smtp_port: int
    addresses: tuple[str, ...]
    max_bytes: int
    relay_host: str
    relay_port: int
    from_address: str


@dataclass(frozen=True)
class VoiceSettings:
    pbx_url: str


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
    visitor_secret: str = field(default="", repr=False)  # OMNIROUTE_VISITOR_SECRET
    dispositions: tuple[str, ...] = ("solved",)  # [wrapup] dispositions, offered at Complete
    source: str | None = None  # the user's file, if one was read


@dataclass(frozen=True)
class Override:
    """A value from the command line (`--port 9000`), applied above the environment."""

    label: str
    section: str
    key: str
    text: str


# -- the schema -------------------------------------------------------------------------------


class _Bad(Exception):
    """A value failed its check; `args[0]` is what it must be."""


@dataclass(frozen=True)
class _Key:
    kind: str  # str | int | float | bool | list — the TOML type and how env text is parsed
    need: str  # completes "must be …"
    check: Callable[[Any], bool] = lambda _: True


def _seconds(positive: bool = False) -> _Key:
    if positive:
        return _Key("float", "a number > 0", lambda v: v > 0)
    return _Key("float", "a number >= 0", lambda v: v >= 0)


def _integer(low: int, high: int | None = None) -> _Key:
    if high is None:
        return _Key("int", f"an integer >= {low}", lambda v: v >= low)
    return _Key("int", f"an integer from {low} to {high}", lambda v: low <= v <= high)


def _choices(allowed: Iterable[str], noun: str, non_empty: bool = False) -> _Key:
    allowed = tuple(allowed)
    need = f"a {'non-empty ' if non_empty else ''}list of {noun} ({', '.join(allowed)})"
    return _Key("list", need, lambda v: (bool(v) or not non_empty) and all(x in allowed for x in v))


def _http_url(empty_ok: bool, bare: bool = False) -> _Key:
    def check(v: str) -> bool:
        if not v:
            return empty_ok
        parts = urlsplit(v)
        plain = not bare or (parts.path in ("", "/") and not parts.query and not parts.fragment)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and plain

    what = "a bare origin (https://host[:port])" if bare else "an http:// or https:// URL"
    return _Key("str", f"{'empty or ' if empty_ok else ''}{what}", check)


def _redis_url_ok(v: str) -> bool:
    if v in ("", "memory"):
        return True
    if is_sentinel(v):  # edges: Redis Sentinel, `queues.clients`
        try:
            parse_sentinel_url(v)
        except ValueError:
            return False
        return True
    if not v.startswith(("redis://", "rediss://", "unix://")):
        return False
    try:
        urlsplit(v).port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    return True


def _pattern(regex: str, need: str, empty_ok: bool = False) -> _Key:
    compiled = re.compile(regex)
    return _Key("str", need, lambda v: (empty_ok and v == "") or bool(compiled.fullmatch(v)))


_EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"
_TEXT = _Key("str", "a string")

_SCHEMA: dict[str, dict[str, _Key]] = {
    "server": {
        "host": _pattern(r"\S+", "a host name or address"),
        "port": _integer(1, 65535),
        "public_url": _http_url(empty_ok=True, bare=True),
        "allowed_origins": _Key(
            "list",
            "a list of origins like https://desk.example.org",
            lambda v: all(re.fullmatch(r"https?://[^/\s]+", o) for o in v),
        ),
        "node": _pattern(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", "empty or a node name", True),
        "max_body_bytes": _integer(1024),
    },
    "events": {
        "claim_idle_s": _seconds(positive=True),
        "dedupe_s": _Key("float", "a number >= 86400 (24 h)", lambda v: v >= 86_400),
        "max_backlog_s": _seconds(),
        "lease_s": _Key("float", "a number of seconds from 0.5 to 60", lambda v: 0.5 <= v <= 60),
    },
    "agent": {
        "offline_grace_s": _seconds(),
        "release_after_s": _seconds(),
        "history_limit": _integer(0, 10_000),
    },
    "redis": {
        "url": _Key(
            "str",
            "empty, 'memory', redis://…, rediss://…, unix://… or "
            "redis+sentinel://host:port[,host:port…]/SERVICE[/DB]",
            _redis_url_ok,
        ),
    },
    "jwt": {"secret": _TEXT},
    "webhook": {"secret": _TEXT},
    "routing": {
        "domain": _pattern(
            r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", "a name of letters, digits, _ . : - (max 64)"
        ),
        "open_empty_levels": _Key("bool", "true or false"),
        "last_agent_s": _seconds(),
        "priority_step_s": _seconds(),
    },
    "eligibility": {g: _choices(TIERS, "tiers", non_empty=True) for g in GROUPS},
    **{f"levels.{g}": {t: _seconds() for t in TIERS} for g in GROUPS},
    "capacity": {
        **{c: _integer(0) for c in CHANNELS},
        "voice_blocks": _choices((c for c in CHANNELS if c != "voice"), "channels"),
    },
    "reservation": {"timeout_s": _seconds(positive=True)},
    "wrapup": {
        **{c: _seconds() for c in CHANNELS},
        "dispositions": _Key(
            "list",
            "a non-empty list of dispositions (1-100 characters each)",
            lambda v: bool(v) and all(0 < len(d) <= 100 for d in v),
        ),
    },
    "presence": {"ttl_s": _seconds(positive=True)},
    "service_level": {"threshold_s": _seconds(positive=True)},
    "explain": {"decisions": _integer(2, 1000), "retention_s": _seconds(positive=True)},
    "recording": {"retention_s": _seconds(positive=True)},
    "sms": {
        "auth_token": _TEXT,
        "account_sid": _TEXT,
        "from_number": _pattern(r"\+[1-9][0-9]{6,14}", "empty or an E.164 number", True),
        "api_base_url": _http_url(empty_ok=False),
        "default_region": _pattern(r"[A-Z]{2}", "empty or an ISO 3166 code like DE", True),
    },
    "email": {
        "smtp_host": _pattern(r"\S+", "a host name or address"),
        "smtp_port": _integer(1, 65535),
        "addresses": _Key(
            "list", "a list of email addresses", lambda v: all(re.fullmatch(_EMAIL, a) for a in v)
        ),
        "max_bytes": _integer(1),
        "relay_host": _pattern(r"\S*", "a host name or address, or empty"),
        "relay_port": _integer(1, 65535),
        "from_address": _pattern(_EMAIL, "empty or an email address", True),
    },
    "voice": {"pbx_url": _http_url(empty_ok=True)},
}
# -- edges: connection limits, and Redis Sentinel URLs (`queues.clients`) --------------------
_SCHEMA["connections"] = {
    "idle_timeout_s": _seconds(positive=True),
    "body_timeout_s": _seconds(positive=True),
    "max_connections": _integer(0),
}
# -- end of edges ----------------------------------------------------------------------------

# What an unknown key in a section is, for the message.
_NOUN = {"eligibility": "client group", **{f"levels.{g}": "tier" for g in GROUPS}}
_RULE_KEYS = ("field", "op", "value", "points")


def _env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.replace('.', '_')}_{key}".upper()


_ENV: dict[str, tuple[str, str]] = {
    _env_name(section, key): (section, key) for section, keys in _SCHEMA.items() for key in keys
}
assert len(_ENV) == sum(map(len, _SCHEMA.values())), "two settings share an environment name"


# -- reading values ---------------------------------------------------------------------------


class _Value(NamedTuple):
    value: Any
    label: str  # where it came from, as the user wrote it
    origin: str  # default | file | env | cli


def _typed(spec: _Key, raw: Any) -> Any:
    """A TOML value of the right type, normalised (floats, tuples); else `_Bad`."""
    if spec.kind == "str" and isinstance(raw, str):
        return raw
    if spec.kind == "bool" and isinstance(raw, bool):
        return raw
    if spec.kind == "int" and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    number = isinstance(raw, int | float) and not isinstance(raw, bool)
    if spec.kind == "float" and number and math.isfinite(raw):
        return float(raw)
    if spec.kind == "list" and isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        return tuple(raw)
    raise _Bad(spec.need)


def _from_text(spec: _Key, text: str) -> Any:
    """An environment or command-line string parsed to the key's type; else `_Bad`."""
    word = text.strip()
    try:
        if spec.kind == "int":
            return int(word, 10)
        if spec.kind == "float":
            number = float(word)
            if not math.isfinite(number):
                raise ValueError(word)
            return number
    except ValueError:
        raise _Bad(spec.need) from None
    if spec.kind == "bool":
        if word.lower() in ("true", "1", "yes"):
            return True
        if word.lower() in ("false", "0", "no"):
            return False
        raise _Bad("true/false, 1/0 or yes/no")
    if spec.kind == "list":
        return tuple(item.strip() for item in text.split(",") if item.strip())
    return text


def _checked(spec: _Key, raw: Any, label: str, from_text: bool) -> Any:
    try:
        value = _from_text(spec, raw) if from_text else _typed(spec, raw)
        if spec.kind == "list" and len(set(value)) != len(value):
            raise _Bad(f"{spec.need} without repeats")
        if not spec.check(value):
            raise _Bad(spec.need)
    except _Bad as bad:
        raise SettingsError(f"{label}: must be {bad.args[0]}, got {_show(raw)}") from None
    return value


def _show(raw: Any) -> str:
    text = repr(raw).replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


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
    doc: Mapping[str, Any], origin: str, values: dict[tuple[str, str], _Value]
) -> tuple[PriorityRule, ...] | None:
    """Check every key of one TOML document into `values`; return its priority rules, if any."""
    rules: tuple[PriorityRule, ...] | None = None
    for section, table in doc.items():
        if section == "priority":
            rules = _priority(table)
            continue
        if section == "levels" and isinstance(table, dict):
            tables = [(f"levels.{group}", sub) for group, sub in table.items()]
        else:
            tables = [(section, table)]
        for name, sub in tables:
            if name not in _SCHEMA:
                if name.startswith("levels."):
                    raise SettingsError(f"[{name}]: unknown client group (known: {_list(GROUPS)})")
                if not isinstance(sub, dict):
                    raise SettingsError(f"{name}: unknown top-level key; keys go in a [section]")
                raise SettingsError(f"[{name}]: unknown section (known: {_list(_sections())})")
            if not isinstance(sub, dict):
                raise SettingsError(f"[{name}]: must be a table, got {_show(sub)}")
            for key, raw in sub.items():
                label = f"[{name}] {key}"
                spec = _SCHEMA[name].get(key)
                if spec is None:
                    noun = _NOUN.get(name, "key")
                    raise SettingsError(f"{label}: unknown {noun} (known: {_list(_SCHEMA[name])})")
                values[(name, key)] = _Value(_checked(spec, raw, label, False), label, origin)
    return rules


def _priority(table: Any) -> tuple[PriorityRule, ...]:
    if not isinstance(table, dict):
        raise SettingsError(f"[priority]: must be a table, got {_show(table)}")
    for key in table:
        if key != "rules":
            raise SettingsError(f"[priority] {key}: unknown key (known: rules)")
    rows = table.get("rules", [])
    if not isinstance(rows, list):
        raise SettingsError(f"[priority] rules: must be a list of rules, got {_show(rows)}")
    return tuple(_rule(row, f"[[priority.rules]] #{n}") for n, row in enumerate(rows, 1))


def _rule(row: Any, label: str) -> PriorityRule:
    if not isinstance(row, dict):
        raise SettingsError(f"{label}: must be a table of {_list(_RULE_KEYS)}, got {_show(row)}")
    for key in row:
        if key not in _RULE_KEYS:
            raise SettingsError(f"{label} {key}: unknown key (known: {_list(_RULE_KEYS)})")
    for key in _RULE_KEYS:
        if key not in row:
            raise SettingsError(f"{label} {key}: missing")
    name, op, value, points = (row[k] for k in _RULE_KEYS)
    if not isinstance(name, str) or not name:
        raise SettingsError(f"{label} field: must be a non-empty string, got {_show(name)}")
    if op not in OPERATORS:
        raise SettingsError(f"{label} op: must be one of {_list(OPERATORS)}, got {_show(op)}")
    scalar = (str, int, float, bool)
    if op in ("gt", "gte", "lt", "lte"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        need = "a number"
    elif op == "in":
        ok = isinstance(value, list) and all(isinstance(x, scalar) for x in value)
        need = "a list of strings, numbers or booleans"
    elif op == "truthy":
        ok, need = isinstance(value, bool), "true or false"
    else:
        ok, need = isinstance(value, scalar), "a string, number or boolean"
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        raise SettingsError(f"{label} value: must be {need} for op {op!r}, got {_show(value)}")
    bound = PRIORITY_BOUND
    if not isinstance(points, int) or isinstance(points, bool) or abs(points) > bound:
        raise SettingsError(
            f"{label} points: must be an integer from -{bound} to {bound}, got {_show(points)}"
        )
    return PriorityRule(name, op, tuple(value) if isinstance(value, list) else value, points)


def _add_env(env: Mapping[str, str], values: dict[tuple[str, str], _Value]) -> None:
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in ENV_ONLY:
            continue
        if name.startswith(ENV_TOOLING_PREFIXES):
            continue
        target = _ENV.get(name)
        if target is None:
            if name.startswith(f"{ENV_PREFIX}PRIORITY_"):
                raise SettingsError(f"{name}: priority rules are read from config files only")
            close = difflib.get_close_matches(name, [*_ENV, *ENV_ONLY], n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise SettingsError(f"{name}: no such setting{hint}")
        spec = _SCHEMA[target[0]][target[1]]
        values[target] = _Value(_checked(spec, env[name], name, True), name, "env")


def _list(items: Iterable[str]) -> str:
    return ", ".join(items)


def _sections() -> list[str]:
    return [s for s in _SCHEMA if not s.startswith("levels.")] + ["levels", "priority"]


# -- building ---------------------------------------------------------------------------------


def load_settings(
    path: str | None, env: Mapping[str, str], *, overrides: Iterable[Override] = ()
) -> Settings:
    """Read the shipped defaults, `path` on top (if given), then `env` and `overrides`; validate.

    Raises `SettingsError` (one line, naming the key as it was given) on the first problem.
    """
    values: dict[tuple[str, str], _Value] = {}
    rules = _add_file(_read_shipped(), "default", values)
    if path is not None:
        user_rules = _add_file(_read_file(path), "file", values)
        rules = user_rules if user_rules is not None else rules
    _add_env(env, values)
    for item in overrides:
        spec = _SCHEMA[item.section][item.key]
        checked = _checked(spec, item.text, item.label, True)
        values[(item.section, item.key)] = _Value(checked, item.label, "cli")
    missing = [
        f"[{s}] {k}"
        for s, keys in _SCHEMA.items()
        for k in keys
        if (s, k) not in values and not s.startswith("levels.")
    ]
    if missing:  # only if the shipped file itself lost a key
        raise SettingsError(f"{missing[0]}: missing from the shipped config/omniroute.toml")
    settings = _build(values, rules or (), path)
    # The chat widget's token key: environment only, like every secret should be.
    return replace(settings, visitor_secret=env.get("OMNIROUTE_VISITOR_SECRET", ""))


def _levels(values: Mapping[tuple[str, str], _Value]) -> dict[str, dict[str, float]]:
    """The bullseye per group, checked against the hard filter it lives inside."""
    levels: dict[str, dict[str, float]] = {}
    for group in GROUPS:
        allowed = values[("eligibility", group)]
        levels[group] = {}
        for tier in TIERS:
            level = values.get((f"levels.{group}", tier))
            if tier in allowed.value and level is None:
                raise SettingsError(
                    f"{allowed.label}: tier {tier} has no level; set [levels.{group}] {tier}"
                    f" (or {_env_name(f'levels.{group}', tier)})"
                )
            if level is None:
                continue
            if tier in allowed.value:
                levels[group][tier] = level.value
            elif level.origin != "default":  # a shipped level of a tier the user excluded: drop
                raise SettingsError(
                    f"{level.label}: tier {tier} is not eligible for {group} "
                    f"({allowed.label} allows {_list(allowed.value)})"
                )
    return levels


def _build(
    values: Mapping[tuple[str, str], _Value], rules: tuple[PriorityRule, ...], path: str | None
) -> Settings:
    def get(section: str, key: str) -> Any:
        return values[(section, key)].value

    def per_channel(section: str) -> dict[str, Any]:
        return {c: get(section, c) for c in CHANNELS}

    policy = Policy(
        eligibility={g: tuple(t for t in TIERS if t in get("eligibility", g)) for g in GROUPS},
        levels=_levels(values),
        open_empty_levels=get("routing", "open_empty_levels"),
        capacity=per_channel("capacity"),
        voice_blocks=tuple(c for c in CHANNELS if c in get("capacity", "voice_blocks")),
        reservation_timeout_s=get("reservation", "timeout_s"),
        wrapup_s=per_channel("wrapup"),
        presence_ttl_s=get("presence", "ttl_s"),
        last_agent_s=get("routing", "last_agent_s"),
        priority_step_s=get("routing", "priority_step_s"),
        priority_rules=rules,
        service_level_threshold_s=get("service_level", "threshold_s"),
        explain_decisions=get("explain", "decisions"),
        explain_retention_s=get("explain", "retention_s"),
        recording_retention_s=get("recording", "retention_s"),
    )
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
        connections=ConnectionSettings(
            **{k: get("connections", k) for k in _SCHEMA["connections"]}
        ),
        redis=RedisSettings(url=get("redis", "url")),
        jwt_secret=get("jwt", "secret"),
        webhook_secret=get("webhook", "secret"),
        domain=get("routing", "domain"),
        policy=policy,
        sms=SmsSettings(**{k: get("sms", k) for k in _SCHEMA["sms"]}),
        email=EmailSettings(**{k: get("email", k) for k in _SCHEMA["email"]}),
        voice=VoiceSettings(pbx_url=get("voice", "pbx_url")),
        dispositions=tuple(get("wrapup", "dispositions")),
        source=path,
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


def env_name(section: str, key: str) -> str:
    """The environment variable of `[section] key`, e.g. OMNIROUTE_RESERVATION_TIMEOUT_S."""
    if key not in _SCHEMA.get(section, {}):
        raise KeyError(f"[{section}] {key}")
    return _env_name(section, key)
