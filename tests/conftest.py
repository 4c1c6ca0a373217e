"""Shared fixtures: one redis-server per session, a fake clock, engines on both backends."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

import queues
from queues.base import RoutingEngine
from queues.policy import Policy
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
