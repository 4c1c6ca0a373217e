"""The edge scenarios of `python -m chaos`, run small against real `omniroute serve`
processes on a real Redis (`chaos.edges`, `chaos.slow`, `chaos.exposure`). Each scenario
raises when its promise breaks; the figures are printed (`pytest -s`). The Sentinel
failover runs in tests/test_sentinel.py.
"""

from __future__ import annotations

from pathlib import Path

from chaos import edges, exposure, slow


async def test_an_accept_racing_its_timeout_has_exactly_one_outcome(tmp_path: Path) -> None:
    figures = await edges.accept_race(tmp_path, races=80, agents=16)
    print(f"\naccept race: {figures}")
    assert figures["both"] == 0 and figures["none"] == 0, figures


async def test_duplicate_and_reordered_webhooks_route_once_and_never_go_back(
    tmp_path: Path,
) -> None:
    figures = await edges.webhooks(tmp_path, copies=10)
    print(f"\nwebhooks: {figures}")
    assert figures["duplicates_routed"] == 0 and figures["backwards"] == 0, figures


async def test_no_forged_or_misused_token_is_let_in(tmp_path: Path) -> None:
    figures = await edges.tokens(tmp_path)
    print(f"\ntokens: {figures}")
    assert figures["accepted"] == 0, figures


async def test_hostile_frames_and_bombs_crash_nothing(tmp_path: Path) -> None:
    figures = await edges.frames(tmp_path)
    print(f"\nframes: {figures}")
    assert figures["crashes"] == 0, figures


async def test_slow_connections_are_cut_and_health_checks_keep_answering(tmp_path: Path) -> None:
    figures = await slow.slowloris(tmp_path, slow=100, seconds=4.0)
    print(f"\nslowloris: {figures}")
    assert figures["check_failures"] == 0, figures


async def test_hostile_mime_gets_answers_and_crashes_nothing(tmp_path: Path) -> None:
    figures = await exposure.mime(tmp_path)
    print(f"\nmime: {figures}")
    assert figures["crashes"] == 0, figures


async def test_no_canary_reaches_the_logs(tmp_path: Path) -> None:
    figures = await exposure.pii(tmp_path)
    print(f"\npii: {figures}")
    assert figures["canaries_in_log"] == 0, figures
