"""queues.runtime and router.engines: the one Redis runtime both engines stand on, and the one
switch that makes both from the settings. The key layout is pinned byte for byte: data written
by earlier versions must stay readable."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
import redis.asyncio as aioredis

from queues.errors import Conflict, Invalid, RoutingError
from queues.memory import MemoryEngine
from queues.policy import Policy
from queues.redis import LIB, LIBRARY, REFUSALS, RedisEngine
from queues.runtime import Namespace, Refusals, engine_kind
from router.engines import create_engines
from router.settings import RedisSettings, load_settings
from store.errors import Fenced, StoreError
from store.memory import MemoryStore
from store.redis import RedisStore
from store.redis_base import SCRIPTS
from store.redis_codec import REFUSALS as STORE_REFUSALS


def test_every_key_is_under_the_domains_hash_tag() -> None:
    ns = Namespace("site-1")
    assert ns.prefix == "omniroute:{site-1}:"
    assert ns.key("agent", "a1") == "omniroute:{site-1}:agent:a1"
    assert ns.key("seq") == "omniroute:{site-1}:seq"
    assert Namespace("a*b").pattern() == "omniroute:{a\\*b}:*"


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        (None, "memory"),
        ("", "memory"),
        ("memory", "memory"),
        ("redis://h:6379/0", "redis"),
        ("unix:///run/redis.sock", "redis"),
        ("redis+sentinel://h:26379/mymaster", "redis"),
        ("postgres://db", None),
    ],
)
def test_engine_kind_reads_the_url_once_for_everyone(url: str | None, kind: str | None) -> None:
    assert engine_kind(url) == kind


def test_refusals_map_codes_to_each_engines_errors() -> None:
    assert isinstance(REFUSALS.of({"err": "conflict", "msg": "busy"}), Conflict)
    assert type(REFUSALS.of({"err": "nonsense", "msg": "?"})) is RoutingError
    assert REFUSALS.of([["offer", "t1"]]) is None
    with pytest.raises(Fenced, match="taken over"):
        STORE_REFUSALS.check({"err": "fenced", "msg": "taken over"})
    with pytest.raises(StoreError):
        STORE_REFUSALS.check({"err": "other", "msg": "no"})
    table = Refusals({"x": ValueError}, KeyError)
    assert table.check({"ok": 1}) == {"ok": 1}


def test_lua_is_loaded_as_before() -> None:
    """The engine's library name carries a digest of its code, and its helpers are the LIB
    files in order (the shared core.lua first), before the first operation; the store's
    scripts are the same core.lua, lib.lua, a newline, then the operation."""
    name, code = LIBRARY.library()
    assert name.startswith("omniroute_engine_") and len(name) == len("omniroute_engine_") + 12
    assert code.startswith(f"#!lua name={name}\n-- core.lua")
    starts = [code.index(f"\n-- {piece}.lua") for piece in LIB[1:]]
    assert starts == sorted(starts) and starts[-1] < code.index("redis.register_function")
    assert f"redis.register_function('{name}_accept', function(KEYS, ARGV)\n" in code
    read = SCRIPTS.source("read")
    assert read.startswith("-- core.lua")
    assert read.index("\n-- lib.lua") < read.index("\n-- read.lua")


def test_one_switch_makes_both_engines_from_the_settings() -> None:
    memory = create_engines(load_settings(None, {}))
    assert isinstance(memory.routing, MemoryEngine) and isinstance(memory.store, MemoryStore)
    env = {"OMNIROUTE_REDIS_URL": "redis://127.0.0.1:1/0", "OMNIROUTE_ROUTING_DOMAIN": "d1"}
    routing, store = create_engines(load_settings(None, env))  # not started: nothing connects
    assert isinstance(routing, RedisEngine) and isinstance(store, RedisStore)
    assert routing.domain == store.domain == "d1"


def test_the_switch_refuses_an_unknown_url() -> None:
    settings = load_settings(None, {})  # validate() refuses such a URL; the switch does too
    bad = dataclasses.replace(settings, redis=RedisSettings("pg://x"))
    with pytest.raises(Invalid) as refused:
        create_engines(bad)
    assert refused.value.field == "redis.url"


async def test_both_engines_write_under_one_namespace(redis_url: str) -> None:
    domain = f"rt-{uuid.uuid4().hex}"
    engine = RedisEngine(Policy(), redis_url, domain=domain)
    store = RedisStore(redis_url, domain=domain)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await engine.start()
        await store.start()
        await engine.login("a1", "CCS", {"chat": 1}, 1_000.0)
        assert await client.exists(f"omniroute:{{{domain}}}:agent:a1")
        assert await client.exists(f"omniroute:{{{domain}}}:log")  # the store's consumer group
        await engine.purge()
        await store.purge()
        assert [k async for k in client.scan_iter(match=f"omniroute:{{{domain}}}:*")] == []
    finally:
        await engine.close()
        await store.close()
        await client.aclose()
