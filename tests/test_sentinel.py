"""Redis fails over under load: the Sentinel scenario of `chaos.sentinel` (its docstring
says what runs and what must hold; `python -m chaos --only sentinel` runs it full size), here
on real processes on 127.0.0.1 at `OMNIROUTE_TEST_SENTINEL_RATE` events/s. Its figures (503
window, accepted, lost) are printed; docs/operations.md holds what this box gave. Also: how a
`redis+sentinel://` URL is read.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chaos.sentinel import SENTINEL, sentinel_failover
from queues.clients import parse_sentinel_url
from router.settings import load_settings
from router.settings_keys import SettingsError

RATE = int(os.environ.get("OMNIROUTE_TEST_SENTINEL_RATE", "150"))  # events/s offered

needs_sentinel = pytest.mark.skipif(
    SENTINEL is None, reason="needs redis-sentinel (apt-get install -y redis-sentinel)"
)


@needs_sentinel
async def test_the_node_follows_the_new_primary_after_sigkill(tmp_path: Path) -> None:
    figures = await sentinel_failover(tmp_path, rate=RATE, before_s=3.0, after_s=9.0)
    print(f"\nsentinel failover: {figures}")
    assert "skipped" not in figures and int(figures["accepted_lost"]) <= RATE, figures


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_database() -> None:
    spec = parse_sentinel_url("redis+sentinel://u:p%40ss@10.0.0.1:26379,[::1]:26380/omni/3")
    assert spec.sentinels == (("10.0.0.1", 26379), ("::1", 26380))
    assert (spec.service, spec.db, spec.username, spec.password) == ("omni", 3, "u", "p@ss")
    assert parse_sentinel_url("rediss+sentinel://h:1/s?sentinel_password=x").ssl
    for bad in (
        "redis+sentinel://h/omni",  # no port
        "redis+sentinel://h:1",  # no service
        "redis+sentinel://h:1/omni/x",
        "redis+sentinel://h:1/omni?nope=1",
    ):
        with pytest.raises(ValueError):
            parse_sentinel_url(bad)


def test_the_setting_takes_a_sentinel_url_and_refuses_a_broken_one() -> None:
    env = {"OMNIROUTE_REDIS_URL": "redis+sentinel://127.0.0.1:26379/omni"}
    assert load_settings(None, env).redis.engine == "redis"
    with pytest.raises(SettingsError, match="OMNIROUTE_REDIS_URL"):
        load_settings(None, {"OMNIROUTE_REDIS_URL": "redis+sentinel://127.0.0.1/omni"})
