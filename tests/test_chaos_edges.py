"""The edge scenarios of `python -m chaos`, run small against real `omniroute serve`
processes on a real Redis (`chaos.edges`, `chaos.hostile`, `chaos.slow`, `chaos.exposure`).
Each scenario raises when its promise breaks, and its promise is figures that must be 0; the
figures are printed (`pytest -s`). The Sentinel failover runs in tests/test_sentinel.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from chaos import edges, exposure, hostile, slow

Scenario = Callable[[Path], Awaitable[dict[str, Any]]]

SCENARIOS = [
    pytest.param(
        lambda d: edges.accept_race(d, races=80, agents=16),
        ("both", "none"),
        id="an accept racing its timeout has exactly one outcome",
    ),
    pytest.param(
        lambda d: edges.webhooks(d, copies=10),
        ("duplicates_routed", "backwards"),
        id="duplicate and reordered webhooks route once and never go back",
    ),
    pytest.param(hostile.tokens, ("accepted",), id="no forged or misused token is let in"),
    pytest.param(hostile.frames, ("crashes",), id="hostile frames and bombs crash nothing"),
    pytest.param(
        lambda d: slow.slowloris(d, slow=100, seconds=4.0),
        ("check_failures",),
        id="slow connections are cut and health checks keep answering",
    ),
    pytest.param(exposure.mime, ("crashes",), id="hostile MIME gets answers and crashes nothing"),
    pytest.param(exposure.pii, ("canaries_in_log",), id="no canary reaches the logs"),
]


@pytest.mark.parametrize(("scenario", "zero"), SCENARIOS)
async def test_the_edge_scenario_keeps_its_promise(
    tmp_path: Path, scenario: Scenario, zero: tuple[str, ...]
) -> None:
    figures = await scenario(tmp_path)
    print(f"\n{figures}")
    assert all(figures[name] == 0 for name in zero), figures
