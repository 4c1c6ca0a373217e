"""Failover in seconds, fencing, and one agent on many nodes: the fault scenarios of
`chaos.scenarios` (and `chaos.hostile`'s signatures), run small, against real `omniroute serve`
processes on a real Redis.

Each scenario raises when a promise breaks (an event lost, assigned or delivered twice,
re-offered later than 5 s after a kill); the figures are printed (`pytest -s`).
"""

from __future__ import annotations

from pathlib import Path

from chaos import hostile, provider, scenarios


async def test_a_node_killed_under_load_is_taken_over_within_seconds(tmp_path: Path) -> None:
    figures = await scenarios.node_kill(tmp_path, events=100)
    print(f"\nnode kill -9: {figures}")
    assert figures["lost"] == 0 and figures["doubled"] == 0, figures
    assert figures["log_left"] == 0, figures


async def test_a_paused_node_that_resumes_is_fenced(tmp_path: Path) -> None:
    figures = await scenarios.node_pause(tmp_path)
    print(f"\nSIGSTOP/SIGCONT: {figures}")
    assert figures["doubled_assignments"] == 0 and figures["doubled_messages"] == 0, figures


async def test_closing_one_of_two_desktops_keeps_the_agent_online(tmp_path: Path) -> None:
    figures = await scenarios.two_desktops(tmp_path)
    print(f"\ntwo desktops: {figures}")


async def test_redis_killed_and_restarted_on_its_aof_loses_no_acked_event(tmp_path: Path) -> None:
    figures = await scenarios.redis_kill(tmp_path, seconds=4.0)
    print(f"\nRedis kill -9: {figures}")
    assert figures["acked_lost"] == 0 and int(figures["refused"]) > 0, figures


async def test_no_mutated_signature_is_accepted(tmp_path: Path) -> None:
    figures = await hostile.signatures(tmp_path, count=1000)
    print(f"\nsignatures: {figures}")
    assert figures["accepted"] == 0, figures


async def test_a_reply_acked_by_a_node_that_dies_is_sent_once_by_another(tmp_path: Path) -> None:
    figures = await provider.reply_kill(tmp_path)
    print(f"\nreply in flight, node kill -9: {figures}")
    assert figures["sent_by_survivor"] == 1 and figures["agent_told"] == "sent", figures
