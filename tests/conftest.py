"""Shared fixtures: one redis-server per session (and a fresh one for a test that kills
nodes), a fake clock, engines and stores on both backends."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import queues
from queues.base import RoutingEngine
from queues.policy import Policy
from store.base import Store
from store.memory import MemoryStore
from tests.support import FakeClock, start_redis, stop_redis

KINDS = ["memory", "redis"]

EngineFactory = Callable[..., Awaitable[RoutingEngine]]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield url
    finally:
        stop_redis(process)


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[str]:
    """A fresh redis-server for one test (the cluster tests kill nodes: no shared state)."""
    process, url = await asyncio.to_thread(start_redis, tmp_path / "redis")
    try:
        yield url
    finally:
        await asyncio.to_thread(stop_redis, process)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_engine(
    request: pytest.FixtureRequest, clock: FakeClock
) -> AsyncIterator[EngineFactory]:
    made: list[tuple[str, RoutingEngine]] = []

    async def factory(kind: str, policy: Policy | None = None) -> RoutingEngine:
        if kind == "memory":
            url = "memory"
        elif kind == "redis":
            url = request.getfixturevalue("redis_url")
        else:
            raise ValueError(f"unknown engine kind {kind!r}")
        engine = queues.create_engine(
            policy or Policy(), url, clock=clock, domain=f"t-{uuid.uuid4().hex}"
        )
        await engine.start()
        made.append((kind, engine))
        return engine

    yield factory
    for kind, engine in reversed(made):
        try:
            if kind == "redis":
                await engine.purge()  # type: ignore[attr-defined]
        finally:
            await engine.close()


@pytest.fixture(params=KINDS, ids=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def engine(kind: str, make_engine: EngineFactory) -> RoutingEngine:
    return await make_engine(kind)


StoreFactory = Callable[..., Awaitable[Store]]


@pytest.fixture(params=KINDS, ids=KINDS)
async def make_store(
    request: pytest.FixtureRequest, clock: FakeClock
) -> AsyncIterator[StoreFactory]:
    kind = str(request.param)
    made: list[Store] = []
    default_domain = f"t-{uuid.uuid4().hex}"

    async def factory(domain: str | None = None, **options: Any) -> Store:
        store: Store
        if kind == "memory":
            store = MemoryStore(domain or default_domain, clock=clock, **options)
        else:
            from store.redis import RedisStore

            url = request.getfixturevalue("redis_url")
            store = RedisStore(url, domain=domain or default_domain, clock=clock, **options)
        await store.start()
        made.append(store)
        return store

    yield factory
    for store in reversed(made):
        try:
            purge = getattr(store, "purge", None)
            if purge is not None:
                await purge()
        finally:
            await store.close()


@pytest.fixture
async def store(make_store: StoreFactory) -> Store:
    return await make_store()
