"""The rules of agent state, written once for Python; `queues/lua/lib_rules.lua` mirrors them.

An agent *chooses* `available` or `away`; the connection makes it `offline`. What ops and the
desktop are *shown* is derived from that choice and the work it holds (see `shown_state`).
Presence expires on its own: every login, presence change and heartbeat pushes `exp` forward
by the policy's `presence_ttl_s`, and an agent whose desktop vanished stops being routable at
`exp` and is logged out by the next tick — nobody has to log it out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

CHOSEN: Final = ("offline", "available", "away")
SHOWN: Final = ("offline", "available", "away", "busy", "wrapup")


def free_capacity(
    cap: Mapping[str, int], load: Mapping[str, int], channel: str, voice_blocks: Sequence[str]
) -> int:
    """Free slots on `channel`: capacity minus load, none while a voice call blocks it."""
    if channel != "voice" and channel in voice_blocks and load.get("voice", 0) > 0:
        return 0
    return max(0, cap.get(channel, 0) - load.get(channel, 0))


def shown_state(chosen: str, total_load: int, wrapups: int) -> str:
    """What the agent is shown as: its choice, refined by the work it holds."""
    if chosen != "available":
        return chosen
    if total_load == 0:
        return "available"
    if wrapups >= total_load:
        return "wrapup"
    return "busy"
