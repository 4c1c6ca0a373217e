"""The settings schema: every key's type and check, how a value is parsed, and the error naming it.

`SCHEMA` lists each `[section] key` of `config/omniroute.toml` with what it must be; `checked`
turns a TOML value or an environment/command-line string into the key's type or raises a
one-line `SettingsError` that names the key as the user wrote it. Where values come from and in
which order they win is `router/settings.py`; what the routing policy makes of them is
`router/settings_policy.py`.

Imports only the routing vocabulary (`queues.policy`), the reading of the Redis URL
(`queues.runtime.engine_kind`) and Sentinel URL parsing (`queues.clients`); nothing from
`router`, so both settings modules can build on it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from queues.clients import is_sentinel, parse_sentinel_url
from queues.policy import CHANNELS, GROUPS, TIERS
from queues.runtime import engine_kind
from queues.skills import SKILL_RE

ENV_PREFIX = "OMNIROUTE_"
# Variables read directly by the parts that need them, not settings from the TOML file.
ENV_ONLY = frozenset({"OMNIROUTE_CONFIG", "OMNIROUTE_VISITOR_SECRET"})
# Namespaces for tooling (test fixtures, the benchmark); never read as settings.
ENV_TOOLING_PREFIXES = ("OMNIROUTE_TEST_", "OMNIROUTE_BENCH_")


class SettingsError(Exception):
    """Raised when a setting is unknown, missing or invalid; the message is one line naming it."""


# -- the schema -------------------------------------------------------------------------------


class _Bad(Exception):
    """A value failed its check; `args[0]` is what it must be."""


@dataclass(frozen=True)
class Key:
    """What one setting must be: its type, the words completing "must be …", and its check."""

    kind: str  # str | int | float | bool | list — the TOML type and how env text is parsed
    need: str  # completes "must be …"
    check: Callable[[Any], bool] = lambda _: True


def _seconds(positive: bool = False) -> Key:
    if positive:
        return Key("float", "a number > 0", lambda v: v > 0)
    return Key("float", "a number >= 0", lambda v: v >= 0)


def _integer(low: int, high: int | None = None) -> Key:
    if high is None:
        return Key("int", f"an integer >= {low}", lambda v: v >= low)
    return Key("int", f"an integer from {low} to {high}", lambda v: low <= v <= high)


def _choices(allowed: Iterable[str], noun: str, non_empty: bool = False) -> Key:
    allowed = tuple(allowed)
    need = f"a {'non-empty ' if non_empty else ''}list of {noun} ({', '.join(allowed)})"
    return Key("list", need, lambda v: (bool(v) or not non_empty) and all(x in allowed for x in v))


def _http_url(empty_ok: bool, bare: bool = False) -> Key:
    def check(v: str) -> bool:
        if not v:
            return empty_ok
        parts = urlsplit(v)
        plain = not bare or (parts.path in ("", "/") and not parts.query and not parts.fragment)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and plain

    what = "a bare origin (https://host[:port])" if bare else "an http:// or https:// URL"
    return Key("str", f"{'empty or ' if empty_ok else ''}{what}", check)


def _redis_url_ok(v: str) -> bool:
    kind = engine_kind(v)  # the one reading of the URL's scheme, `queues.runtime`
    if kind != "redis":
        return kind == "memory"
    if is_sentinel(v):  # edges: Redis Sentinel, `queues.clients`
        try:
            parse_sentinel_url(v)
        except ValueError:
            return False
        return True
    try:
        urlsplit(v).port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    return True


def _pattern(regex: str, need: str, empty_ok: bool = False) -> Key:
    compiled = re.compile(regex)
    return Key("str", need, lambda v: (empty_ok and v == "") or bool(compiled.fullmatch(v)))


_EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"
_TEXT = Key("str", "a string")

SCHEMA: dict[str, dict[str, Key]] = {
    "server": {
        "host": _pattern(r"\S+", "a host name or address"),
        "port": _integer(1, 65535),
        "public_url": _http_url(empty_ok=True, bare=True),
        "allowed_origins": Key(
            "list",
            "a list of origins like https://desk.example.org",
            lambda v: all(re.fullmatch(r"https?://[^/\s]+", o) for o in v),
        ),
        "node": _pattern(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", "empty or a node name", True),
        "max_body_bytes": _integer(1024),
    },
    "events": {
        "claim_idle_s": _seconds(positive=True),
        "dedupe_s": Key("float", "a number >= 86400 (24 h)", lambda v: v >= 86_400),
        "max_backlog_s": _seconds(),
        "lease_s": Key("float", "a number of seconds from 0.5 to 60", lambda v: 0.5 <= v <= 60),
    },
    "agent": {
        "offline_grace_s": _seconds(),
        "release_after_s": _seconds(),
        "history_limit": _integer(0, 10_000),
    },
    "redis": {
        "url": Key(
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
        "open_empty_levels": Key("bool", "true or false"),
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
        "dispositions": Key(
            "list",
            "a non-empty list of dispositions (1-100 characters each)",
            lambda v: bool(v) and all(0 < len(d) <= 100 for d in v),
        ),
    },
    "presence": {"ttl_s": _seconds(positive=True)},
    "service_level": {"threshold_s": _seconds(positive=True)},
    "explain": {"decisions": _integer(2, 1000), "retention_s": _seconds(positive=True)},
    "recording": {"retention_s": _seconds(positive=True)},
    "skills": {
        "hard": Key(
            "list",
            "a list of skill names (1-64 letters, digits, _ . : -)",
            lambda v: all(SKILL_RE.fullmatch(name) for name in v),
        ),
        "widen_s": _seconds(),
    },
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
        "addresses": Key(
            "list", "a list of email addresses", lambda v: all(re.fullmatch(_EMAIL, a) for a in v)
        ),
        "max_bytes": _integer(1),
        "relay_host": _pattern(r"\S*", "a host name or address, or empty"),
        "relay_port": _integer(1, 65535),
        "from_address": _pattern(_EMAIL, "empty or an email address", True),
    },
    "voice": {"pbx_url": _http_url(empty_ok=True)},
    "campaigns": {
        "tick_s": _seconds(positive=True),
        "max_queued": _integer(1, 10_000),
        "batch": _integer(1, 10_000),
        "recover_s": _seconds(positive=True),
    },
}
# -- edges: connection limits, and Redis Sentinel URLs (`queues.clients`) --------------------
SCHEMA["connections"] = {
    "idle_timeout_s": _seconds(positive=True),
    "body_timeout_s": _seconds(positive=True),
    "max_connections": _integer(0),
}
# -- end of edges ----------------------------------------------------------------------------

# What an unknown key in a section is, for the message.
KEY_NOUN = {"eligibility": "client group", **{f"levels.{g}": "tier" for g in GROUPS}}


def _env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section.replace('.', '_')}_{key}".upper()


ENV_KEYS: dict[str, tuple[str, str]] = {
    _env_name(section, key): (section, key) for section, keys in SCHEMA.items() for key in keys
}
assert len(ENV_KEYS) == sum(map(len, SCHEMA.values())), "two settings share an environment name"


# -- parsing values ---------------------------------------------------------------------------


class Value(NamedTuple):
    """A checked value with where it came from, so a later check can name its source."""

    value: Any
    label: str  # where it came from, as the user wrote it
    origin: str  # default | file | env | cli


def _typed(spec: Key, raw: Any) -> Any:
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


def _from_text(spec: Key, text: str) -> Any:
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


def checked(spec: Key, raw: Any, label: str, from_text: bool) -> Any:
    """`raw` (TOML, or text when `from_text`) as the key's value; else a `SettingsError`."""
    try:
        value = _from_text(spec, raw) if from_text else _typed(spec, raw)
        if spec.kind == "list" and len(set(value)) != len(value):
            raise _Bad(f"{spec.need} without repeats")
        if not spec.check(value):
            raise _Bad(spec.need)
    except _Bad as bad:
        raise SettingsError(f"{label}: must be {bad.args[0]}, got {show(raw)}") from None
    return value


def show(raw: Any) -> str:
    """A value as the error messages quote it: one line, at most 80 characters."""
    text = repr(raw).replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def listing(items: Iterable[str]) -> str:
    """Names for a "(known: …)" hint."""
    return ", ".join(items)


def sections() -> list[str]:
    """The sections a file may hold, as written there (`levels`, not `levels.normal`)."""
    return [s for s in SCHEMA if not s.startswith("levels.")] + ["levels", "priority"]


def env_name(section: str, key: str) -> str:
    """The environment variable of `[section] key`, e.g. OMNIROUTE_RESERVATION_TIMEOUT_S."""
    if key not in SCHEMA.get(section, {}):
        raise KeyError(f"[{section}] {key}")
    return _env_name(section, key)
